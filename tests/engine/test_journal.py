"""engine/journal.py: append, replay (torn last line, corruption), atomic rewrite."""
from __future__ import annotations

import json

import pytest

from gangplace.engine.errors import InvalidFile
from gangplace.engine.journal import JOURNAL_NAME, Journal


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
