"""The ``gangplace`` command line. Parses flags into typed values and calls the API; no logic.

Each subcommand lives in its own module ``service/cmd_<name>.py`` exposing ``add_parser(sub)``
(registers its flags and sets ``func``); this file only wires them together and maps errors to
exit codes: 0 success, 2 invalid input (one line on stderr naming the field), 3 does not fit.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version as _dist_version

from gangplace.engine.model.errors import GangplaceError

EXIT_OK, EXIT_INVALID, EXIT_NOT_PLACED = 0, 2, 3
# subcommand modules, in help order; a module that is missing from a build is skipped
COMMANDS = ("cmd_place", "cmd_gen", "cmd_serve", "cmd_grpc", "cmd_simulate", "cmd_bench")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" outside an install."""
    try:
        return _dist_version("gangplace")
    except PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "unknown"


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter without breaking words at hyphens ("gangplace-auto", "k8s-default")."""

    def _split_lines(self, text, width):
        import textwrap
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        import textwrap
        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """Every gangplace parser and sub-parser (sub-parsers inherit the class) uses ``_HelpFormatter``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gangplace",
                                     description="Topology-aware gang placement for GPU clusters.")
    parser.add_argument("--version", action="version", version=f"gangplace {package_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gangplace.service.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"gangplace.service.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(args.func(args) or 0)
    except GangplaceError as e:
        print(f"gangplace: error: {e}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
