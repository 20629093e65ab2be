"""The allocation journal of file mode: checksummed JSON lines, group-committed, compacted atomically.

Format (version 2). Line 1 is the header ``gangplace-journal 2``; every other line is one record,
``<crc32, 8 lowercase hex> <record number> <JSON object>``, the CRC taken over
``"<record number> <JSON object>"`` and the record numbers counting 1, 2, 3... from the header.
Records: ``{"op": "bind", "uid", "node", "gpus", ...}``, ``{"op": "unbind", "uid"}``,
``{"op": "node", "spec": {...}}`` (a node added or changed, in the cluster file's node format)
and ``{"op": "remove_node", "name"}``. The checksum catches any damage within a line (CRC-32
detects every single-bit error and every burst up to 32 bits); the record number catches a line
lost, duplicated or moved. A file without the header is a version-1 journal (plain JSON lines,
from before this format): it is read as such and rewritten as version 2 at start.

``replay`` folds the file into the live bind entries and the node changes. Only a **torn** last
line is ignored: bytes after the last newline, which a crash cut short before its fsync, so it
was never acknowledged. Any newline-terminated line that fails (checksum, number, JSON, fields,
value ranges) is an ``InvalidFile`` naming the line, wherever it is, because skipping it could
double-book a GPU; so is a last line whose newline was damaged (a complete record followed by one
stray byte). ``rewrite`` replaces the file with the header and one line per live entry
(temporary file, fsync, rename, fsync of the directory).

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
  same pod UID to the same node is a no-op that answers success.
- **Prefix property.** The file is append-only and a crash keeps a prefix of what was
  written (plus possibly a torn last line, which replay ignores). Changes become visible in
  memory before they are durable, so a later change may depend on an earlier undurable one
  (a bind into capacity an unbind freed); its own sync covers the earlier line too, because
  that line is earlier in the same file. So whatever was acknowledged is on disk together with
  everything it depended on.
- **Errors.** A failure that happens before anything reaches the file (opening it: EMFILE,
  EROFS; ``dup`` of the descriptor: EMFILE) raises ``JournalError`` and changes nothing; the
  next call tries again. A failed ``write`` (ENOSPC: a partial line may be in the file) or
  ``fsync`` (the kernel may have dropped the dirty pages, and a later fsync can succeed without
  them) **poisons** the file: every waiter and every later ``write``/``sync`` raises
  ``JournalError``, until a ``rewrite`` from the in-memory truth succeeds (the state retries it:
  ``ClusterState.recover_journal``); that new file is whole and fsync'd, so acknowledging
  resumes. ``problem`` holds the last failure's reason until a call succeeds (``/readyz``).
- **Compaction** (``rewrite``) runs under the state lock, so no write interleaves; the new file
  holds every live entry (those not yet synced included) and is fsync'd before the rename, so
  afterwards everything written so far is durable and ``synced`` jumps to ``written``. A
  rewrite that fails leaves the old file in place and in use.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Iterable

from ..model.errors import InvalidFile

log = logging.getLogger("gangplace.state")

JOURNAL_NAME = "gangplace-journal.jsonl"
COMPACT_MIN_LINES = 10_000  # rewritten when it holds more lines than this and 4x the live entries


FORMAT_VERSION = 2
HEADER = f"gangplace-journal {FORMAT_VERSION}"
OPS = ("bind", "unbind", "node", "remove_node")
INT64_MAX = 2**63 - 1


class JournalError(OSError):
    """The journal cannot vouch for durability (a failed open, write or fsync): nothing is acknowledged."""


def _crc(body: str) -> str:
    return f"{zlib.crc32(body.encode('utf-8')):08x}"


def _line(entry: dict, n: int) -> str:
    body = f"{n} {json.dumps(entry, separators=(',', ':'), ensure_ascii=False, allow_nan=False)}"
    return f"{_crc(body)} {body}\n"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number a journal holds")


def _no_duplicates(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("a key appears twice")
    return d


def _loads(text: str):
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def _int_field(d: dict, key: str, lo: int, hi: int, default=None) -> None:
    v = d.get(key, default)
    if v is None and default is None and key not in d:
        raise ValueError(f"missing {key!r}")
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key!r} must be an integer in [{lo}, {hi}], got {str(v)[:40]!r}")


def _str_field(d: dict, key: str, required: bool) -> None:
    v = d.get(key)
    if v is None and not required:
        return
    if not isinstance(v, str) or (required and not v):
        raise ValueError(f"{key!r} must be a {'non-empty ' if required else ''}string, got {str(v)[:40]!r}")


def check_entry(d) -> None:
    """Raise ``ValueError`` unless ``d`` is a well-formed record (types and value ranges: a value
    such as ``1e400`` or ``2**63`` is refused here, never an OverflowError later)."""
    if not isinstance(d, dict):
        raise ValueError("not an object")
    op = d.get("op")
    if op not in OPS:
        raise ValueError(f"unknown op {str(op)[:40]!r}")
    if op in ("bind", "unbind"):
        _str_field(d, "uid", True)
    if op == "bind":
        _str_field(d, "node", True)
        _int_field(d, "gpus", 0, INT64_MAX)
        for key in ("cpu", "memory"):
            _int_field(d, key, 0, INT64_MAX, default=0)
        _int_field(d, "priority", -2**31, 2**31 - 1, default=0)
        for key in ("gang", "namespace", "name"):
            _str_field(d, key, False)
    elif op == "node":
        if not isinstance(d.get("spec"), dict):
            raise ValueError("'spec' must be an object")
        _str_field(d["spec"], "name", True)
    elif op == "remove_node":
        _str_field(d, "name", True)


class Journal:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_NAME
        self.lines = 0  # records in the file (live entries after a rewrite, plus appends)
        self.nodes: dict[str, dict | None] = {}  # replay: node name -> its last spec, None if removed
        self.version = FORMAT_VERSION  # of the file as read by replay (1: a legacy file)
        self._file = None
        # group commit: sequence numbers count write() calls that wrote something
        self._cond = threading.Condition(threading.Lock())
        self.written = 0  # the last sequence number written to the file (not necessarily on disk)
        self.synced = 0  # every sequence number up to this one is on disk
        self.fsyncs = 0  # fsyncs done by sync() (tests and benchmarks: how many were shared)
        self._syncing = False
        self._error: JournalError | None = None  # poisoned: only a successful rewrite clears it
        self._transient: str | None = None  # the last failure that wrote nothing, until a call succeeds
        self._compaction: str | None = None  # the last failed rewrite's reason, until one succeeds

    # ------------------------------------------------------------------ reading
    def replay(self) -> list[dict]:
        """The bind entries still live at the end of the file, in bind order; the node changes
        are left in ``nodes``. Raises ``InvalidFile`` naming the first damaged line."""
        self.nodes = {}
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise InvalidFile(f"cannot read journal {self.path}: {e}", field=str(self.path)) from None
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: empty, or a torn write
        legacy = not lines or not lines[0].startswith(b"gangplace-journal")
        self.version = 1 if legacy else FORMAT_VERSION
        live: dict[str, dict] = {}
        first = 0 if legacy else 1
        if not legacy:
            self._check_header(lines[0])
        for n, raw in enumerate(lines[first:], start=first):
            try:
                d = self._decode(raw, n - first + 1, legacy)
            except ValueError as e:
                raise InvalidFile(f"journal {self.path} line {n + 1} is damaged: {e}; nothing was changed. Restore "
                                  f"the file from a backup, or move it away to start with no allocations",
                                  field=str(self.path)) from None
            if d is not None:
                self._fold(d, live)
        if tail.strip():
            self._torn(tail, len(lines), len(lines) - first + 1, legacy)
        self.lines = len(lines) - first
        return list(live.values())

    def _check_header(self, raw: bytes) -> None:
        if raw != HEADER.encode():
            text = raw.decode("utf-8", "replace")[:60]
            parts = text.split()
            if len(parts) == 2 and parts[0] == "gangplace-journal" and parts[1].isdigit():
                why = f"format version {parts[1]}; this build reads versions 1 and {FORMAT_VERSION}"
            else:
                why = f"the header is damaged ({text!r}, expected {HEADER!r})"
            raise InvalidFile(f"journal {self.path} line 1: {why}", field=str(self.path))

    @staticmethod
    def _decode(raw: bytes, number: int, legacy: bool) -> dict | None:
        """One line's record (None: a blank line of a legacy file); ``ValueError`` if damaged."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None
        if legacy:
            if not text.strip():
                return None
            d = _loads(text)
        else:
            crc, _, body = text.partition(" ")
            if len(crc) != 8 or crc != _crc(body):
                raise ValueError("checksum mismatch")
            num, _, js = body.partition(" ")
            if num != str(number):
                raise ValueError(f"record number {num[:20]!r}, expected {number} (a line is missing, "
                                 f"repeated or out of order)")
            d = _loads(js)
        check_entry(d)
        return d

    def _fold(self, d: dict, live: dict[str, dict]) -> None:
        op = d["op"]
        if op == "bind":
            live.pop(d["uid"], None)
            live[d["uid"]] = d
        elif op == "unbind":
            live.pop(d["uid"], None)
        elif op == "node":
            self.nodes[d["spec"]["name"]] = d["spec"]
        else:
            self.nodes[d["name"]] = None

    def _torn(self, tail: bytes, line: int, number: int, legacy: bool) -> None:
        """The bytes after the last newline: a write cut short is ignored (never acknowledged);
        a complete record followed by one stray byte is a damaged newline and refused."""
        for cut in (tail, tail[:-1]):
            try:
                self._decode(cut, number, legacy)
            except ValueError:
                continue
            if cut is not tail:
                raise InvalidFile(f"journal {self.path} line {line + 1} is damaged: its end of line is not a "
                                  f"newline; nothing was changed", field=str(self.path))
        log.warning("journal %s: ignoring torn last line %d (cut short by a crash before it was acknowledged)",
                    self.path, line + 1)

    # ------------------------------------------------------------------ writing
    def rewrite(self, entries: Iterable[dict]) -> None:
        """Atomically replace the file with ``entries`` and keep appending after them. The caller
        serializes it with ``write`` (the state lock); afterwards everything written is durable.
        Also the way back from a poisoned journal (the entries are the in-memory truth). On
        failure the old file stays in place and in use, and ``JournalError`` is raised."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(HEADER + "\n")
                for e in entries:
                    count += 1
                    f.write(_line(e, count))
                f.flush()
                os.fsync(f.fileno())
            with self._cond:  # a concurrent sync() holds a dup of the old descriptor, never this one
                new = open(tmp, "a", encoding="utf-8")
                try:
                    os.replace(tmp, self.path)
                except OSError:
                    new.close()
                    raise
                self._close()
                self._file = new
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise self._problem(e, "compaction") from e
        try:  # make the rename itself durable
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - platforms without directory fsync
            pass
        with self._cond:
            self.lines = count
            self.synced = self.written  # the new file holds every live entry, fsync'd
            if self._error is not None:
                log.warning("journal %s: rewritten from memory after %s; acknowledging again", self.path, self._error)
            self._error = None
            self._transient = self._compaction = None
            self._cond.notify_all()

    def write(self, entries: list[dict]) -> int:
        """Append the lines to the file without fsync; returns their sequence number, to pass to
        ``sync`` before acknowledging. Callers serialize writes (the state lock)."""
        self._check()
        if not entries:
            return self.written
        if self._file is None:
            try:
                self._file = open(self.path, "a", encoding="utf-8")
            except OSError as e:  # nothing written: nothing to distrust
                raise self._problem(e, "open") from e
        text = "".join(_line(e, self.lines + k + 1) for k, e in enumerate(entries))
        if self._file.tell() == 0:  # a new file (no rewrite yet) starts with the header
            text = HEADER + "\n" + text
        try:
            self._file.write(text)
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
            upto = self.written
            try:  # before _syncing is set: a failure here (EMFILE) must not leave it set
                fd = os.dup(self._file.fileno()) if self._file is not None else None
            except OSError as e:
                raise self._problem(e, "fsync") from e
            self._syncing = True
        err = None
        try:
            if fd is not None:
                os.fsync(fd)
        except OSError as e:
            err = e
        finally:
            self._close_fd(fd)
            with self._cond:
                self._syncing = False
                self.fsyncs += 1
                if err is not None:
                    self._fail(err)
                else:
                    self.synced = max(self.synced, upto)
                    self._transient = None
                self._cond.notify_all()
        if self._error is not None:
            raise self._error
        # upto >= target: seq was written before this call, so it was covered

    @staticmethod
    def _close_fd(fd: int | None) -> None:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - a close of a dup has nothing to flush
                pass

    def append(self, entries: list[dict]) -> None:
        """Write and fsync; returns once the entries are durable."""
        if entries:
            self.sync(self.write(entries))

    # ------------------------------------------------------------------ errors
    @property
    def problem(self) -> str | None:
        """Why the journal is not healthy now (None: it is): poisoned, a failed compaction (the old
        file stays in use: durability holds, but the file grows until one succeeds), or the last
        failure that wrote nothing (until a call succeeds)."""
        if self._error is not None:
            return self._failure
        return self._compaction or self._transient

    def _problem(self, e: OSError, during: str) -> JournalError:
        """A failure that wrote nothing: reported (``problem``), not poisoning."""
        reason = f"journal {during} failed: {_reason(e)}"
        if during == "compaction":
            self._compaction = reason
        else:
            self._transient = reason
        log.error("journal %s: %s; nothing was changed, will retry", self.path, reason)
        return JournalError(e.errno or errno.EIO, f"journal {self.path}: {reason}")

    def _fail(self, e: OSError) -> None:
        if self._error is None:
            self._failure = f"journal write or fsync failed: {_reason(e)}"
            log.error("journal %s: %s; refusing to acknowledge anything until it is rewritten", self.path,
                      self._failure)
            self._error = JournalError(e.errno or errno.EIO,
                                       f"journal {self.path} is unusable after a failed write or fsync ({_reason(e)}); "
                                       f"nothing is acknowledged until it is rewritten (retried every second)")

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
            try:
                self._file.close()
            except OSError:  # its unflushed bytes were already reported by write()
                pass
            self._file = None

    def close(self) -> None:
        """Make everything written durable (best effort), then close the file."""
        try:
            self.sync()
        except OSError:  # poisoned: nothing more to vouch for
            pass
        with self._cond:
            self._close()


def _reason(e: OSError) -> str:
    """An OSError as a person can act on it."""
    hint = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "the file system is read-only", errno.EMFILE: "the process has too many open files",
            errno.ENFILE: "the system has too many open files", errno.EACCES: "permission denied",
            errno.EIO: "an I/O error"}.get(e.errno)
    text = e.strerror or str(e)
    return f"{text} ({hint})" if hint and hint.lower() not in text.lower() else text
