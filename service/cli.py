"""The ``gangplace`` command line. Parses flags into typed values and calls the API; no logic.

Each subcommand lives in its own module ``service/cmd_<name>.py`` exposing ``add_parser(sub)``
(registers its flags and sets ``func``); this file only wires them together and maps errors to
exit codes: 0 success, 2 invalid input (one line on stderr naming the field), 3 does not fit.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from gangplace.engine.model.errors import GangplaceError

EXIT_OK, EXIT_INVALID, EXIT_NOT_PLACED = 0, 2, 3
# subcommand modules, in help order, with the subcommand each registers; a module that is missing
# from a build is skipped
COMMANDS = ("cmd_place", "cmd_gen", "cmd_serve", "cmd_grpc", "cmd_simulate", "cmd_bench")
COMMAND_NAMES = {"place": "cmd_place", "gen-cluster": "cmd_gen", "gen-trace": "cmd_gen", "serve": "cmd_serve",
                 "grpc": "cmd_grpc", "simulate": "cmd_simulate", "bench": "cmd_bench"}


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" outside an install."""
    from importlib.metadata import PackageNotFoundError, version  # ~30 ms: only for --version
    try:
        return version("gangplace")
    except PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (start-up time of every other command)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"gangplace {package_version()}")
        parser.exit()


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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; ``only``: just that subcommand module (a command line naming its
    subcommand first imports nothing else: ``gangplace place`` does not load gRPC or the server)."""
    parser = _Parser(prog="gangplace",
                                     description="Topology-aware gang placement for GPU clusters.")
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMANDS:
        try:
            module = importlib.import_module(f"gangplace.service.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"gangplace.service.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    first = (sys.argv[1:] if argv is None else argv)[:1]
    parser = build_parser(COMMAND_NAMES.get(first[0]) if first else None)
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
