"""The engine's wings import one way (docs/architecture.md): model <- place <- exact <- live, sim.

Walks every module under engine/ (the AST, so function-level imports count too) and fails on an
import of ``gangplace.service`` or of a wing above the importing one. ``live`` and ``sim`` are
siblings: neither may import the other. The top-level facade (``api``, ``__init__``, the
``synthetic`` path shim) may import any wing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"
RANK = {"model": 0, "_core": 0, "place": 1, "exact": 2, "live": 3, "sim": 3}
FACADE = {"__init__", "api", "synthetic"}


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(ENGINE).with_suffix("").parts)
    return parts


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name under gangplace) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = ["gangplace", "engine"] + _module_name(path)[:-1]
    if path.name == "__init__.py":
        pkg = ["gangplace", "engine"] + _module_name(path)[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None:  # "from . import x": each name is a module
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def _wing(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[:2] != ["gangplace", "engine"] or len(parts) < 3:
        return None
    return parts[2]


def _violations() -> list[str]:
    bad = []
    for path in sorted(ENGINE.rglob("*.py")):
        parts = _module_name(path)
        own = parts[0] if len(parts) > 1 else None
        for line, mod in _imports(path):
            where = f"{path.relative_to(ENGINE.parent)}:{line} imports {mod}"
            if mod.startswith("gangplace.service"):
                bad.append(where + " (engine/ never imports the service)")
                continue
            target = _wing(mod)
            if own is None or target is None or target == own:
                continue  # the facade, a third-party module, or the same wing
            if target not in RANK:
                bad.append(where + f" (unknown engine module {target!r}: facade modules are for users only)")
            elif RANK[target] > RANK[own] or (RANK[target] == RANK[own] and target != own):
                bad.append(where + f" (wing {own!r} may not import wing {target!r})")
    return bad


def test_engine_wings_import_one_way():
    assert _violations() == []


@pytest.mark.parametrize("source, expected", [
    ("from ..sim.simulator import simulate\n", "wing 'place' may not import wing 'sim'"),
    ("from ..live import state\n", "wing 'place' may not import wing 'live'"),
    ("def f():\n    from gangplace.service import app\n", "engine/ never imports the service"),
    ("from ..api import place\n", "facade modules are for users only"),
], ids=["an upward import is caught", "a from-package import is caught",
        "a function-level service import is caught", "a wing importing the facade is caught"])
def test_the_walk_catches_a_bad_import(tmp_path, source, expected):
    fake = tmp_path / "engine"
    (fake / "place").mkdir(parents=True)
    (fake / "place" / "bad.py").write_text(source)
    globals()["ENGINE"], saved = fake, ENGINE
    try:
        found = _violations()
    finally:
        globals()["ENGINE"] = saved
    assert len(found) == 1 and expected in found[0], found
