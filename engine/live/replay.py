"""Journal replay: the bind records a journal holds, read back at start (engine/live/journal.py
folds and checks the lines, naming any damaged one; this decodes them)."""
from __future__ import annotations

import logging
from typing import Container, Iterator

from ..model.errors import InvalidFile
from .journal import Journal
from .ledger import BindRecord

log = logging.getLogger("gangplace.state")


def replay(journal: Journal, nodes: Container[str] | None) -> Iterator[BindRecord]:
    """The live bind records, in journal order (the node changes are in ``journal.nodes``). A
    record on a node not in ``nodes`` is kept (its pod's deletion will remove it) with a warning
    (``nodes`` None: the caller warns); a line that does not decode is ``InvalidFile``."""
    for d in journal.replay():
        try:
            rec = BindRecord.from_json(d)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise InvalidFile(f"journal {journal.path}: bad entry {str(d)[:200]}: {e}", field=str(journal.path)) from None
        if nodes is not None and rec.node not in nodes:
            log.warning("journal: pod %s is on node %r which the cluster no longer has", rec.pod_uid, rec.node)
        yield rec
