"""engine/live/journal.py: append, replay (torn last line, corruption), atomic rewrite."""
from __future__ import annotations

import json

import pytest

from gangplace.engine.model.errors import InvalidFile
from gangplace.engine.live.journal import JOURNAL_NAME, Journal


def bind(uid, node="n0", gpus=1):
    return {"op": "bind", "uid": uid, "node": node, "gpus": gpus}


def test_replay_folds_binds_and_unbinds_in_order(tmp_path):
    j = Journal(tmp_path)
    j.append([bind("a"), bind("b"), bind("a", "n1")])
    j.append([{"op": "unbind", "uid": "b"}, bind("c")])
    j.close()
    live = Journal(tmp_path).replay()
    assert [(d["uid"], d["node"]) for d in live] == [("a", "n1"), ("c", "n0")]


@pytest.mark.parametrize("tail", ['{"op":"bind","uid":"x","node":"n', '{"op":"bind","uid":"x"}', "[1, 2]",
                                  '{"op":"rebind","uid":"x"}'],
                         ids=["cut mid-line", "missing fields", "not an object", "unknown op"])
def test_a_bad_last_line_is_a_torn_write_and_ignored(tmp_path, tail):
    j = Journal(tmp_path)
    j.append([bind("a")])
    j.close()
    with open(tmp_path / JOURNAL_NAME, "a") as f:
        f.write(tail + "\n\n")
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["a"]


def test_a_bad_line_before_the_end_is_corruption(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(bind("a")) + "\n{oops\n" + json.dumps(bind("b")) + "\n")
    with pytest.raises(InvalidFile) as e:
        Journal(tmp_path).replay()
    assert "line 2" in str(e.value)


def test_rewrite_replaces_the_file_and_keeps_appending(tmp_path):
    j = Journal(tmp_path)
    j.append([bind(str(k)) for k in range(50)])
    j.rewrite([bind("keep")])
    assert j.lines == 1 and not (tmp_path / (JOURNAL_NAME + ".tmp")).exists()
    j.append([bind("more")])
    j.close()
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["keep", "more"]
    assert j.needs_compaction(0) is False


# ---------------------------------------------------------------------- group commit
import errno  # noqa: E402
import threading  # noqa: E402

import gangplace.engine.live.journal as journal_mod  # noqa: E402
from gangplace.engine.live.journal import JournalError  # noqa: E402


class CountingFsync:
    """os.fsync as the journal module sees it: counted, optionally blocked or failing."""

    def __init__(self, monkeypatch, *, fail_on=(), block_first=False):
        self.calls = 0
        self.fail_on = set(fail_on)
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block_first:
            self.release.set()
        self.real = journal_mod.os.fsync
        monkeypatch.setattr(journal_mod.os, "fsync", self)

    def __call__(self, fd):
        self.calls += 1
        n = self.calls
        if n == 1:
            self.entered.set()
            assert self.release.wait(10)
        if n in self.fail_on:
            raise OSError(errno.EIO, "Input/output error")
        self.real(fd)


def test_write_is_visible_in_the_file_but_durable_only_after_sync(tmp_path, monkeypatch):
    fsync = CountingFsync(monkeypatch)
    j = Journal(tmp_path)
    s1 = j.write([bind("a")])
    s2 = j.write([bind("b"), bind("c")])
    assert (s1, s2) == (1, 2) and j.synced == 0 and fsync.calls == 0
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["a", "b", "c"]  # in the file (page cache)
    j.sync(s1)  # one fsync covers everything written before it
    assert j.synced == 2 and fsync.calls == 1
    j.sync(s2)
    j.sync()
    assert fsync.calls == 1 and j.fsyncs == 1
    assert j.write([]) == 2  # nothing to write: the sequence number of what is there


def test_concurrent_waiters_share_one_fsync(tmp_path, monkeypatch):
    fsync = CountingFsync(monkeypatch)
    j = Journal(tmp_path)
    seqs = [j.write([bind(str(k))]) for k in range(8)]
    threads = [threading.Thread(target=j.sync, args=(s,)) for s in seqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert j.synced == 8 and fsync.calls == 1


def test_writes_during_an_fsync_are_covered_by_the_next_one_and_nobody_returns_early(tmp_path, monkeypatch):
    fsync = CountingFsync(monkeypatch, block_first=True)
    j = Journal(tmp_path)
    done = []
    first = threading.Thread(target=lambda: (j.sync(j.write([bind("a")])), done.append("a")))
    first.start()
    assert fsync.entered.wait(10)  # the first fsync is in flight
    s2 = j.write([bind("b")])
    second = threading.Thread(target=lambda: (j.sync(s2), done.append("b")))
    second.start()
    second.join(0.2)
    assert done == [] and j.synced == 0, "line 2 was written after the fsync in flight began"
    fsync.release.set()
    first.join(10)
    second.join(10)
    assert sorted(done) == ["a", "b"] and j.synced == 2 and fsync.calls == 2


def test_a_failed_fsync_poisons_the_journal(tmp_path, monkeypatch):
    CountingFsync(monkeypatch, fail_on={1})
    j = Journal(tmp_path)
    seq = j.write([bind("a")])
    with pytest.raises(JournalError, match="restart"):
        j.sync(seq)
    assert j.failed and j.synced == 0
    with pytest.raises(JournalError):  # nothing is acknowledged any more, not even after a good fsync
        j.sync(seq)
    with pytest.raises(JournalError):
        j.write([bind("b")])
    with pytest.raises(JournalError):
        j.rewrite([bind("a")])


def test_a_rewrite_during_an_fsync_in_flight_is_safe_and_makes_everything_durable(tmp_path, monkeypatch):
    fsync = CountingFsync(monkeypatch, block_first=True)
    j = Journal(tmp_path)
    j.write([bind("a"), bind("b")])
    t = threading.Thread(target=j.sync)
    t.start()
    assert fsync.entered.wait(10)  # fsyncing a duplicate of the old file's descriptor
    j.write([{"op": "unbind", "uid": "a"}])
    j.rewrite([bind("b")])  # compaction (its own fsyncs pass through)
    assert j.synced == j.written == 2
    fsync.release.set()
    t.join(10)
    assert j.synced == 2 and not j.failed
    j.sync(j.write([bind("c")]))
    j.close()
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["b", "c"]
