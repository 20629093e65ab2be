"""Shared CLI output helpers: JSON to stdout, rich tables for people."""
from __future__ import annotations

import sys

import orjson


def print_json(obj) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def console():
    from rich.console import Console
    return Console()
