"""engine/live/replay.py: decoding the journal's bind records at start."""
from __future__ import annotations

import json
import logging

import pytest
from gangplace.engine.live.journal import JOURNAL_NAME, Journal
from gangplace.engine.live.ledger import BindRecord
from gangplace.engine.live.replay import replay
from gangplace.engine.model.errors import InvalidFile


def test_records_come_back_in_order_and_one_on_a_vanished_node_is_kept_with_a_warning(tmp_path, caplog):
    lines = [BindRecord("a", "n0", 4).to_json(), BindRecord("b", "gone", 8).to_json(), {"op": "unbind", "uid": "a"},
             BindRecord("c", "n0", 2).to_json()]
    (tmp_path / JOURNAL_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))
    with caplog.at_level(logging.WARNING, "gangplace.state"):
        recs = list(replay(Journal(tmp_path), {"n0"}))
    assert [r.pod_uid for r in recs] == ["b", "c"]
    assert "no longer has" in caplog.text


def test_a_record_that_does_not_decode_stops_the_start(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text(json.dumps({"op": "bind", "uid": "a", "node": "n0", "gpus": "many"}) + "\n")
    with pytest.raises(InvalidFile, match="line 1 is damaged: 'gpus' must be an integer"):
        list(replay(Journal(tmp_path), {"n0"}))
