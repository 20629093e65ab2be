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
def test_a_last_line_without_its_newline_is_a_torn_write_and_ignored(tmp_path, tail):
    j = Journal(tmp_path)
    j.append([bind("a")])
    j.close()
    with open(tmp_path / JOURNAL_NAME, "a") as f:
        f.write(tail)  # the crash came before the newline: never acknowledged
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["a"]


@pytest.mark.parametrize("tail", ['{"op":"bind","uid":"x","node":"n', '{"op":"bind","uid":"x"}', "[1, 2]"],
                         ids=["cut mid-line", "missing fields", "not an object"])
def test_a_damaged_last_line_that_ends_in_a_newline_is_refused_not_dropped_as_torn(tmp_path, tail):
    j = Journal(tmp_path)
    j.append([bind("a")])
    j.close()
    with open(tmp_path / JOURNAL_NAME, "a") as f:
        f.write(tail + "\n")  # complete (so possibly acknowledged), and damaged
    with pytest.raises(InvalidFile, match="line 3 is damaged"):
        Journal(tmp_path).replay()


def test_an_acknowledged_last_line_whose_newline_flipped_is_refused(tmp_path):
    j = Journal(tmp_path)
    j.append([bind("a"), bind("b")])
    j.close()
    data = (tmp_path / JOURNAL_NAME).read_bytes()
    (tmp_path / JOURNAL_NAME).write_bytes(data[:-1] + b"\x0b")
    with pytest.raises(InvalidFile, match="line 3 is damaged: its end of line"):
        Journal(tmp_path).replay()


def test_a_legacy_version_1_journal_is_read_and_its_lines_checked(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(bind("a")) + "\n" + json.dumps(bind("b", gpus=2)) + "\n")
    j = Journal(tmp_path)
    assert [d["uid"] for d in j.replay()] == ["a", "b"] and j.version == 1
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(bind("a")) + "\n" + '{"op":"bind","uid":"b","node":"n0","gpus":1e400}\n')
    with pytest.raises(InvalidFile, match="line 2 is damaged: 'gpus' must be an integer"):
        Journal(tmp_path).replay()


def test_every_line_carries_a_checksum_and_a_record_number_after_a_version_header(tmp_path):
    j = Journal(tmp_path)
    j.append([bind("a"), bind("b")])
    j.close()
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert lines[0] == "gangplace-journal 2"
    assert [x.split(" ")[1] for x in lines[1:]] == ["1", "2"] and all(len(x.split(" ")[0]) == 8 for x in lines[1:])


@pytest.mark.parametrize("edit", ["drop line 2", "swap lines 2 and 3", "repeat line 2", "gpus 1 -> 0",
                                  "future version"])
def test_lost_moved_repeated_or_edited_lines_are_refused_naming_the_line(tmp_path, edit):
    j = Journal(tmp_path)
    j.append([bind("a"), bind("b"), bind("c")])
    j.close()
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines(keepends=True)
    if edit == "drop line 2":
        lines, where = lines[:1] + lines[2:], "line 2"
    elif edit == "swap lines 2 and 3":
        lines, where = [lines[0], lines[2], lines[1], lines[3]], "line 2"
    elif edit == "repeat line 2":
        lines, where = [lines[0], lines[1], lines[1], lines[2], lines[3]], "line 3"
    elif edit == "gpus 1 -> 0":
        lines[3], where = lines[3].replace('"gpus":1', '"gpus":0'), "line 4"
    else:
        lines[0], where = "gangplace-journal 3\n", "line 1: format version 3"
    (tmp_path / JOURNAL_NAME).write_text("".join(lines))
    with pytest.raises(InvalidFile, match=where):
        Journal(tmp_path).replay()


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
    with pytest.raises(JournalError, match="until it is rewritten"):
        j.sync(seq)
    assert j.failed and j.synced == 0 and "I/O error" in j.problem
    with pytest.raises(JournalError):  # nothing is acknowledged any more, not even after a good fsync
        j.sync(seq)
    with pytest.raises(JournalError):
        j.write([bind("b")])
    j.rewrite([bind("a")])  # the way back: a whole new file from the in-memory truth
    assert not j.failed and j.problem is None and j.synced == j.written
    j.append([bind("b")])
    j.close()
    assert [d["uid"] for d in Journal(tmp_path).replay()] == ["a", "b"]


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
