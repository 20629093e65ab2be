"""The allocation journal of file mode: append-only JSON lines, fsync'd, compacted atomically.

One line per change: ``{"op": "bind", "uid", ...}`` or ``{"op": "unbind", "uid"}``. ``append``
returns only after the lines are on disk (fsync), so an acknowledged bind survives a crash.
``replay`` folds the file into the live bind entries: a torn last line (the crash came before
its fsync, so it was never acknowledged) is ignored; a corrupt line anywhere else is an
``InvalidFile``, because silently skipping it could double-book a GPU. ``rewrite`` replaces the
file with one line per live entry (temporary file, fsync, rename, fsync of the directory).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from .errors import InvalidFile

log = logging.getLogger("gangplace.state")

JOURNAL_NAME = "gangplace-journal.jsonl"
COMPACT_MIN_LINES = 10_000  # rewritten when it holds more lines than this and 4x the live entries


def _line(entry: dict) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"


class Journal:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_NAME
        self.lines = 0  # lines in the file (live entries after a rewrite, plus appends)
        self._file = None

    def replay(self) -> list[dict]:
        """The bind entries still live at the end of the file, in bind order."""
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise InvalidFile(f"cannot read journal {self.path}: {e}", field=str(self.path)) from None
        lines = data.split(b"\n")
        last_used = max((i for i, x in enumerate(lines) if x.strip()), default=-1)
        live: dict[str, dict] = {}
        for n, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw)
                if not isinstance(d, dict):
                    raise ValueError("not an object")
                op, uid = d["op"], str(d["uid"])
                if op == "bind":
                    for key in ("node", "gpus"):
                        d[key]  # required
                    live.pop(uid, None)
                    live[uid] = d
                elif op == "unbind":
                    live.pop(uid, None)
                else:
                    raise ValueError(f"unknown op {op!r}")
            except (ValueError, KeyError, TypeError) as e:
                if n == last_used:  # torn write
                    log.warning("journal %s: ignoring torn last line %d", self.path, n + 1)
                    continue
                raise InvalidFile(f"journal {self.path} line {n + 1} is corrupt: {e}", field=str(self.path)) from None
        return list(live.values())

    def rewrite(self, entries: Iterable[dict]) -> None:
        """Atomically replace the file with ``entries`` and keep appending after them."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        with open(tmp, "w", encoding="utf-8") as f:
            for e in entries:
                f.write(_line(e))
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        try:  # make the rename itself durable
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - platforms without directory fsync
            pass
        self.lines = count
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, entries: list[dict]) -> None:
        """Write and fsync; returns once the entries are durable."""
        if not entries:
            return
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write("".join(_line(e) for e in entries))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.lines += len(entries)

    def needs_compaction(self, live: int) -> bool:
        return self.lines > max(COMPACT_MIN_LINES, 4 * live)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
