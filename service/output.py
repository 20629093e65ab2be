"""Shared CLI output helpers: JSON to stdout, rich tables for people."""
from __future__ import annotations

import sys

import orjson


def print_json(obj) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def fmt_duration(seconds: float, digits: int = 1) -> str:
    """Seconds for people: "42 s", "3.5 min", "4.6 h", "1.1 d" (``digits`` after the point for h and d)."""
    if seconds >= 86400:
        return f"{seconds / 86400:.{digits}f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.{digits}f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def console():
    from rich.console import Console
    return Console()
