"""One server per state directory: an exclusive ``flock`` on ``<dir>/gangplace.lock``, held for
the process's life.

Two servers replaying, appending to and compacting one journal would each acknowledge binds the
other cannot see, which is double booking by another road. The lock is taken before the journal
is opened, and the lock file records the holder (pid, command line, start time) so the refusal
names it. The kernel drops a ``flock`` when its holder dies, kill -9 included, so a restart never
needs a stale lock removed by hand.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_NAME = "gangplace.lock"


class StateDirInUse(OSError):
    """Another live process holds the state directory."""


class StateDirLock:
    """``StateDirLock.acquire(path)`` creates the directory if needed and locks it (or raises
    ``StateDirInUse`` naming the holder); ``release()`` unlocks (also done by process exit)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> "StateDirLock":
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the state dir {directory}: {e.strerror or e}; give another one with "
                          f"--state-dir DIR, or run without a journal with --ephemeral") from None
        path = directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateDirInUse(f"the state dir {directory} is in use by another gangplace server ({holder}); "
                                f"stop it, or give this server its own --state-dir (or --ephemeral)") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\ncommand {_command_line()}\nsince {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                 .encode())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _command_line() -> str:
    """This process's command line, as ``ps`` would show it."""
    try:
        raw = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
        return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    except OSError:
        return " ".join(sys.argv)


def _read_holder(fd: int) -> str:
    """The holder as its lock file records it: "pid 1234, gangplace serve ..., since ..."."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        text = ""
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    if "pid" not in fields:
        return "holder unknown"
    out = f"pid {fields['pid']}"
    if fields.get("command"):
        out += f": {fields['command']}"
    if fields.get("since"):
        out += f", since {fields['since']}"
    return out
