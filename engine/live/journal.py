"""The allocation journal of file mode: append-only JSON lines, group-committed, compacted atomically.

One line per change: ``{"op": "bind", "uid", ...}`` or ``{"op": "unbind", "uid"}``.
``replay`` folds the file into the live bind entries: a torn last line (the crash came before
its fsync, so it was never acknowledged) is ignored; a corrupt line anywhere else is an
``InvalidFile``, because silently skipping it could double-book a GPU. ``rewrite`` replaces the
file with one line per live entry (temporary file, fsync, rename, fsync of the directory).

Group commit. Writing and making durable are two steps:

- ``write(entries) -> seq`` appends the lines to the file (one ``write(2)``, no fsync) and
  returns the journal sequence number of the last of them. Callers serialize writes (the state
  calls it under its lock, right before applying the change in memory), so the file order is
  the order of the changes.
- ``sync(seq)`` returns once every line up to ``seq`` is on disk. One ``fsync`` covers every
  line written before it started, so concurrent callers share fsyncs: one thread fsyncs, the
  others wait on a condition until ``synced`` (the "synced up to" counter) reaches their
  sequence number; whoever finds nobody fsyncing starts the next one, covering everything
  written so far. ``sync`` needs no state lock: the state releases its lock before calling it,
  so readers and other writers go on during the fsync. The fsync runs on a ``dup`` of the file
  descriptor, so a concurrent ``rewrite`` (compaction) can swap the file underneath safely.
- ``append(entries)`` is both at once (write, then sync).

Crash semantics (what a reader of the file after a crash sees):

- **Never acknowledged without being on disk.** Every caller that acknowledges a change (the
  extender's bind answer, a gRPC ``BindPods``/``UnbindPods`` reply) first waits for
  ``sync(seq)`` of the change's sequence number, and a repeat of an already applied change
  (same pod UID, same node: a no-op in memory) waits for ``sync`` of everything written so far,
  because the original's fsync may still be in flight.
- **On disk without having been acknowledged: possible and harmless.** A crash between the
  write and the reply leaves a line whose caller never heard "done". kube-scheduler retries
  the bind; after the restart the replayed allocation is the same record, and a bind of the
  same pod UID to the same node is a no-op that answers success. (A retry to another node
  moves the allocation, as any re-bind does.)
- **Prefix property.** The file is append-only and a crash keeps a prefix of what was
  written (plus possibly a torn last line, which replay ignores). Changes become visible in
  memory before they are durable, so a later change may depend on an earlier undurable one
  (a bind into capacity an unbind freed); its own sync covers the earlier line too, because
  that line is earlier in the same file. So whatever was acknowledged is on disk together with
  everything it depended on.
- **A failed fsync poisons the journal.** After an ``fsync`` error the kernel may have dropped
  the dirty pages, and a later fsync can succeed without them, so nothing written since the
  last good fsync can be vouched for: every waiter and every later ``write``/``sync`` raises
  ``JournalError`` until the process restarts and replays what the disk really holds. Binds
  fail (the scheduler retries them) rather than being acknowledged on a bad disk.
- **Compaction** (``rewrite``) runs under the state lock, so no write interleaves; the new file
  holds every live entry (those not yet synced included) and is fsync'd before the rename, so
  afterwards everything written so far is durable and ``synced`` jumps to ``written``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Iterable

from ..model.errors import InvalidFile

log = logging.getLogger("gangplace.state")

JOURNAL_NAME = "gangplace-journal.jsonl"
COMPACT_MIN_LINES = 10_000  # rewritten when it holds more lines than this and 4x the live entries


class JournalError(OSError):
    """The journal cannot vouch for durability (a failed fsync or write): nothing is acknowledged."""


def _line(entry: dict) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"


class Journal:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_NAME
        self.lines = 0  # lines in the file (live entries after a rewrite, plus appends)
        self._file = None
        # group commit: sequence numbers count write() calls that wrote something
        self._cond = threading.Condition(threading.Lock())
        self.written = 0  # the last sequence number written to the file (not necessarily on disk)
        self.synced = 0  # every sequence number up to this one is on disk
        self.fsyncs = 0  # fsyncs done by sync() (tests and benchmarks: how many were shared)
        self._syncing = False
        self._error: JournalError | None = None

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
        """Atomically replace the file with ``entries`` and keep appending after them. The caller
        serializes it with ``write`` (the state lock); afterwards everything written is durable."""
        self._check()
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        with open(tmp, "w", encoding="utf-8") as f:
            for e in entries:
                f.write(_line(e))
                count += 1
            f.flush()
            os.fsync(f.fileno())
        with self._cond:  # a concurrent sync() holds a dup of the old descriptor, never this one
            self._close()
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
            self.synced = self.written  # the new file holds every live entry, fsync'd
            self._cond.notify_all()

    def write(self, entries: list[dict]) -> int:
        """Append the lines to the file without fsync; returns their sequence number, to pass to
        ``sync`` before acknowledging. Callers serialize writes (the state lock)."""
        self._check()
        if not entries:
            return self.written
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        try:
            self._file.write("".join(_line(e) for e in entries))
            self._file.flush()
        except OSError as e:  # a partial line may be in the file: nothing after it is trustworthy
            self._fail(e)
            raise self._error from e
        with self._cond:
            self.lines += len(entries)
            self.written += 1
            return self.written

    def sync(self, seq: int | None = None) -> None:
        """Return once every line up to sequence number ``seq`` (default: everything written so
        far) is on disk. Concurrent callers share fsyncs. Raises ``JournalError`` if the journal
        cannot vouch for it. Blocks: call it off the event loop and outside the state lock."""
        with self._cond:
            target = self.written if seq is None else min(seq, self.written)
            while True:
                if self._error is not None:
                    raise self._error
                if self.synced >= target:
                    return
                if not self._syncing:
                    break
                self._cond.wait()
            # nobody is fsyncing: this thread does it, for everything written so far
            self._syncing = True
            upto = self.written
            fd = os.dup(self._file.fileno()) if self._file is not None else None
        err = None
        try:
            if fd is not None:
                os.fsync(fd)
        except OSError as e:
            err = e
        finally:
            if fd is not None:
                os.close(fd)
        with self._cond:
            self._syncing = False
            self.fsyncs += 1
            if err is not None:
                self._fail(err)
            else:
                self.synced = max(self.synced, upto)
            self._cond.notify_all()
            if self._error is not None:
                raise self._error
        # upto >= target: seq was written before this call, so it was covered

    def append(self, entries: list[dict]) -> None:
        """Write and fsync; returns once the entries are durable."""
        if entries:
            self.sync(self.write(entries))

    def _fail(self, e: OSError) -> None:
        if self._error is None:
            log.error("journal %s: %s; refusing to acknowledge anything until a restart", self.path, e)
            self._error = JournalError(f"journal {self.path} is unusable after a failed write or fsync ({e}); "
                                       f"restart to replay what the disk holds")

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    @property
    def failed(self) -> bool:
        return self._error is not None

    def needs_compaction(self, live: int) -> bool:
        return self.lines > max(COMPACT_MIN_LINES, 4 * live)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Make everything written durable (best effort), then close the file."""
        try:
            self.sync()
        except OSError:  # poisoned: nothing more to vouch for
            pass
        with self._cond:
            self._close()
