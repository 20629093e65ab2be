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
# subcommand modules, in help order; a module that is missing from a build is skipped
COMMANDS = ("cmd_place", "cmd_gen", "cmd_serve", "cmd_grpc", "cmd_simulate", "cmd_bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gangplace",
                                     description="Topology-aware gang placement for GPU clusters.")
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
