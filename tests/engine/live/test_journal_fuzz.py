"""A fuzz campaign on the journal (engine/live/journal.py): damage a real journal (single-bit
flips anywhere, edits that keep a record valid JSON) and start a state on it. Every mutation
must be refused at start with the damaged line named, or replay to exactly the same state
(allocations and node specs); a mutation that starts with a different state is a silent change,
the failure this campaign exists to find (15 % of 300 flips before checksums).

    .venv/bin/python -m tests.engine.live.test_journal_fuzz --flips 300 --edits 100 --seed 1
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gangplace.engine import Cluster, NodeSpec
from gangplace.engine.live.journal import JOURNAL_NAME
from gangplace.engine.live.state import BindRecord, ClusterState
from gangplace.engine.model.errors import InvalidFile


def cluster() -> Cluster:
    return Cluster(["block", "rack"], [NodeSpec(f"r{r}-n{n}", {"block": "b0", "rack": f"r{r}"}, gpus=8,
                                                cpu=64_000, memory=512 * 2**30, pods=110)
                                       for r in range(2) for n in range(4)])


def build_journal(directory: Path) -> bytes:
    """A journal with binds (some in gangs), unbinds, re-binds and node changes of each kind."""
    st = ClusterState(cluster(), journal_dir=directory)
    for k in range(12):
        st.bind(f"pod-{k}", f"r{k % 2}-n{k % 4}", gpus=1 + k % 3, cpu=500 * k, memory=2**20 * k,
                gang=f"ns/g{k % 3}" if k % 2 else None, namespace="ns", name=f"p{k}", priority=k - 5)
    st.unbind_many(["pod-3", "pod-7"])
    st.bind_many([BindRecord("pod-20", "r1-n3", 2), BindRecord("pod-21", "r1-n3", 2, gang="ns/g9")])
    spec = st.node_spec("r0-n2")
    st.upsert_node(NodeSpec(spec.name, spec.topology, gpus=8, gpus_used=2, cpu=spec.cpu, memory=spec.memory,
                            pods=spec.pods, schedulable=False))
    st.upsert_node(NodeSpec("r1-n9", {"block": "b0", "rack": "r1"}, gpus=4))
    st.remove_node("r0-n3")
    st.unbind("pod-9")
    st.bind("pod-30", "r1-n9", gpus=4)
    st.close()
    return (directory / JOURNAL_NAME).read_bytes()


def fingerprint(st: ClusterState):
    return (sorted(st.allocations().items()), {n: st.node_spec(n) for n in sorted(st.node_names())})


@dataclass
class Outcome:
    refused: int = 0
    same: int = 0
    silent: list = field(default_factory=list)  # (what, detail) of every silent change
    wrong_line: list = field(default_factory=list)  # refused, but naming another line


def _start(directory: Path, data: bytes):
    directory.mkdir(exist_ok=True)
    (directory / JOURNAL_NAME).write_bytes(data)
    try:
        st = ClusterState(cluster(), journal_dir=directory)
    except InvalidFile as e:
        return None, str(e)
    try:
        return fingerprint(st), None
    finally:
        st.close()


def _judge(out: Outcome, what: str, line: int, result, expected) -> None:
    fp, error = result
    if error is not None:
        named = re.search(r"line (\d+)", error)
        if named is None or int(named.group(1)) != line:
            out.wrong_line.append((what, error[:300]))
        out.refused += 1
    elif fp == expected:
        out.same += 1
    else:
        out.silent.append((what, "started with a different state"))


def flips(data: bytes, n: int, rng: random.Random):
    """``n`` single-bit flips at random byte offsets: (description, damaged line, mutated bytes)."""
    for _ in range(n):
        off, bit = rng.randrange(len(data)), rng.randrange(8)
        mutated = bytearray(data)
        mutated[off] ^= 1 << bit
        yield f"bit {bit} of byte {off}", data[:off].count(b"\n") + 1, bytes(mutated)


def json_edits(data: bytes, n: int, rng: random.Random):
    """``n`` edits that keep one record valid JSON (a number changed, a string changed, a key
    dropped or added), checksum and record number left as they were."""
    lines = data.split(b"\n")
    for _ in range(n):
        k = rng.randrange(1, len(lines) - 1)
        crc, num, body = lines[k].decode().split(" ", 2)
        d = json.loads(body)
        target = d.get("spec", d) if d["op"] == "node" else d
        key = rng.choice(sorted(target))
        v = target[key]
        kind = rng.choice(["change", "drop", "add"])
        if kind == "drop":
            del target[key]
        elif kind == "add":
            target["extra"] = 1
        elif isinstance(v, bool) or v is None:
            target[key] = not v
        elif isinstance(v, int):
            target[key] = v + rng.choice([-1, 1, 8, 2**63])
        elif isinstance(v, str):
            target[key] = (v[:-1] + chr(ord(v[-1]) ^ 1)) if v else "x"
        else:
            target[key] = None
        new = f"{crc} {num} {json.dumps(d, separators=(',', ':'))}".encode()
        if new == lines[k]:
            continue
        mutated = lines[:k] + [new] + lines[k + 1:]
        yield f"{kind} {key!r} on line {k + 1}", k + 1, b"\n".join(mutated)


def campaign(n_flips: int, n_edits: int, seed: int) -> tuple[Outcome, int]:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="gangplace-journal-fuzz-"))
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # durability is not what is tested here; 2 fsyncs per start add up
    try:
        data = build_journal(work / "base")
        expected, error = _start(work / "try", data)
        assert error is None, error
        out = Outcome()
        for what, line, mutated in [*flips(data, n_flips, rng), *json_edits(data, n_edits, rng)]:
            _judge(out, what, line, _start(work / "try", mutated), expected)
        return out, len(data)
    finally:
        os.fsync = real_fsync
        shutil.rmtree(work, ignore_errors=True)


def _check(out: Outcome) -> None:
    assert out.silent == [], f"{len(out.silent)} silent changes, e.g. {out.silent[:5]}"
    assert out.wrong_line == [], f"refused naming another line: {out.wrong_line[:5]}"


def test_attack_3_300_bit_flips_and_100_json_edits_are_each_refused_naming_the_line_or_change_nothing():
    out, _ = campaign(300, 100, seed=1)
    _check(out)
    assert out.refused + out.same == 400 and out.refused > 300


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2])
def test_attack_3_a_big_journal_campaign_finds_no_silent_change(seed):
    out, _ = campaign(3000, 1000, seed=seed)
    _check(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=300)
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    out, size = campaign(a.flips, a.edits, a.seed)
    print(f"journal of {size} bytes; {a.flips} bit flips + {a.edits} JSON edits (seed {a.seed}): "
          f"{out.refused} refused at start naming the damaged line, {out.same} replayed to the same state, "
          f"{len(out.silent)} silent changes, {len(out.wrong_line)} refused naming another line; "
          f"{time.perf_counter() - t0:.1f} s")
    for what, detail in out.silent[:20] + out.wrong_line[:20]:
        print(" ", what, "->", detail)
