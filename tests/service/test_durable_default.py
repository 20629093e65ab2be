"""File and synthetic mode are durable by default (issue 20): binds are journaled to a default
state dir under $XDG_STATE_HOME, a second server on the same dir refuses to start naming the
holder, and running without a journal is an explicit choice that the banner, the log, /readyz
and a metric all announce. Real ``gangplace serve`` processes on 127.0.0.1, ports chosen by the OS;
$XDG_STATE_HOME is a temporary directory (tests/conftest.py)."""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from gangplace.engine import GangRequest, PodSet
from gangplace.service import gangplace_pb2 as pb
from gangplace.service.client import GangplaceClient, ServiceError
from gangplace.service.config import ClusterSource, ServeConfig, default_state_dir, load_config
from gangplace.service.state_lock import LOCK_NAME, StateDirInUse, StateDirLock

GANGPLACE = [sys.executable, "-m", "gangplace.service.cli"]
# 256 nodes x 8 GPUs: room for the first run to be killed mid-stream, long before it fills the cluster
NODES = [f"b{b}-r{r}-n{n}" for b in range(4) for r in range(8) for n in range(8)]
CLUSTER_YAML = "levels: [block, rack]\nnodes:\n" + "".join(
    f"  - {{name: {name}, topology: {{block: {name[:2]}, rack: {name[:5]}}}, gpus: 8, cpu: 64, memory: 512Gi}}\n"
    for name in NODES)
TOTAL_GPUS = 8 * len(NODES)
START_TIMEOUT_S = 60.0


class Server:
    """``gangplace serve ARGS`` as a subprocess; the banner read within ``START_TIMEOUT_S``."""

    def __init__(self, *args: str):
        self.args = [*GANGPLACE, "serve", *args, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                     "--placer", "heuristic", "--log-level", "info"]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._err: list[str] = []  # drained all along: a full pipe would block the server's logging
        self._err_reader = threading.Thread(target=lambda: self._err.extend(iter(self.proc.stderr.readline, "")),
                                            daemon=True)
        self._err_reader.start()
        self.banner = self._read_banner()
        grpc_m = re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", self.banner)
        http_m = re.search(r"HTTP\s+http://127\.0\.0\.1:(\d+)", self.banner)
        self.grpc_port, self.http_port = int(grpc_m.group(1)), int(http_m.group(1))

    def _read_banner(self) -> str:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in iter(self.proc.stdout.readline, "")] + [lines.put("")],
                         daemon=True).start()  # a thread: select() does not see lines already buffered
        banner, deadline = [], time.monotonic() + START_TIMEOUT_S
        while not any(line.startswith("Try:") for line in banner):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no banner within {START_TIMEOUT_S:g} s: {''.join(banner)!r}") from None
            if not line:  # exited
                self.proc.wait(10)
                self._err_reader.join(10)
                raise AssertionError(f"exited {self.proc.returncode}: {''.join(self._err)!r}")
            banner.append(line)
        return "".join(banner)

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> str:
        """SIGTERM, wait; returns stderr (the JSON log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err_reader.join(10)
        return "".join(self._err)


def _bind_gangs(port: int, prefix: str, stop: threading.Event, acked: list, *, size: int = 2, gpus: int = 4,
                pause_s: float = 0.0) -> None:
    """One client: reserve a gang over gRPC (Place), then bind its pods (BindPods, all or none),
    until the cluster is full, ``stop`` is set or the server is gone. ``acked``: the (node, GPUs)
    of every pod whose bind was acknowledged."""
    try:
        with GangplaceClient(f"127.0.0.1:{port}", timeout_s=10) as c:
            k = 0
            while not stop.is_set():
                k += 1
                name = f"{prefix}-{k}"
                gang = GangRequest(name, (PodSet("w", size, gpus=gpus),))
                placement = c.place(gang, reserve=True)
                if not placement.placed:
                    return  # full
                binds = [pb.PodBinding(pod=f"{name}-{p.index}", node=p.node, gpus=gpus, gang=name)
                         for p in placement.pods]
                c.bind_many(binds)
                acked.extend((b.node, b.gpus) for b in binds)
                time.sleep(pause_s)
    except ServiceError:
        return  # the server was killed mid-call: nothing more is acknowledged


def _booked(acked: list) -> dict[str, int]:
    per_node = dict.fromkeys(NODES, 0)
    for node, gpus in acked:
        per_node[node] += gpus
    return per_node


@pytest.mark.slow
def test_kill_9_then_restart_with_the_same_command_line_never_double_books(tmp_path):
    """The issue's scenario: concurrent gang binds from several gRPC clients on a file cluster,
    kill -9, restart with the SAME command line (no --state-dir), fill the cluster: no node may end
    with more GPUs acknowledged than it has."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER_YAML)
    args = ("--cluster", str(cluster))
    first_acked: list = []
    first = Server(*args)
    state_dir = default_state_dir(ClusterSource(file=str(cluster)))
    assert str(state_dir) in first.banner and str(state_dir).startswith(os.environ["XDG_STATE_HOME"])
    stop = threading.Event()
    clients = [threading.Thread(target=_bind_gangs, args=(first.grpc_port, f"a{i}", stop, first_acked),
                                kwargs={"pause_s": 0.005})
               for i in range(4)]
    try:
        for t in clients:
            t.start()
        deadline = time.monotonic() + 60
        while len(first_acked) < 12 and time.monotonic() < deadline and any(t.is_alive() for t in clients):
            time.sleep(0.005)
        assert len(first_acked) >= 12, "the first server bound almost nothing"
    finally:
        first.kill9()  # mid-stream: the clients are still placing and binding
        stop.set()
        for t in clients:
            t.join(30)
    assert first.proc.returncode == -signal.SIGKILL
    assert sum(_booked(first_acked).values()) < TOTAL_GPUS // 2, "the first run must leave room for the second"

    second = Server(*args)  # the same command line
    second_acked: list = []
    try:
        assert str(state_dir) in second.banner
        clients = [threading.Thread(target=_bind_gangs, args=(second.grpc_port, f"b{i}", threading.Event(),
                                                              second_acked)) for i in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert not any(t.is_alive() for t in clients), "the second run did not finish filling the cluster"
        with GangplaceClient(f"127.0.0.1:{second.grpc_port}") as c:
            used = {n.name: n.gpus_used for n in c.snapshot().nodes}
    finally:
        second.stop()
    booked = _booked(first_acked + second_acked)
    assert all(gpus <= 8 for gpus in booked.values()), f"GPUs booked twice: { {n: g for n, g in booked.items() if g > 8} }"
    # the server's books hold every acknowledged bind (and maybe binds made durable whose answer
    # the kill cut off: on disk, never acknowledged), and the cluster is full, not overfull
    assert all(used[n] >= booked[n] for n in NODES) and all(used[n] <= 8 for n in NODES)
    assert sum(used.values()) == TOTAL_GPUS


@pytest.mark.parametrize("flag", [("--ephemeral",), ("--state-dir", "none")], ids=["--ephemeral", "--state-dir none"])
def test_ephemeral_mode_says_so_in_the_banner_the_log_readyz_and_a_metric(flag):
    server = Server("--synthetic", "dgx-h100", "--gpus", "64", *flag)
    try:
        assert "EPHEMERAL" in server.banner and "will NOT survive a restart" in server.banner
        status, body = server.get("/readyz")
        assert status == 200 and "ephemeral: binds will not survive a restart" in body
        _, metrics = server.get("/metrics")
        assert re.search(r"^gangplace_binds_durable 0\.0$", metrics, re.M), metrics
    finally:
        log = server.stop()
    assert re.search(r"ephemeral mode: binds are kept in memory only and will not survive a restart", log), log
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "gangplace").exists(), "ephemeral mode wrote a state dir"


def test_the_default_mode_journals_to_its_state_dir_and_says_where():
    server = Server("--synthetic", "dgx-h100", "--gpus", "64")
    try:
        state_dir = default_state_dir(ClusterSource(synthetic="dgx-h100", gpus=64))
        assert f"state {state_dir} (bind journal, default for this cluster" in server.banner
        assert server.get("/readyz") == (200, "ready\n")
        assert re.search(r"^gangplace_binds_durable 1\.0$", server.get("/metrics")[1], re.M)
        assert (state_dir / LOCK_NAME).is_file() and (state_dir / "gangplace-journal.jsonl").exists()
    finally:
        log = server.stop()
    assert str(state_dir) in log  # the start-up log line names it too


def test_a_second_server_on_the_same_state_dir_refuses_to_start_naming_the_holder():
    first = Server("--synthetic", "dgx-h100", "--gpus", "64")
    try:
        second = subprocess.run([*GANGPLACE, "serve", "--synthetic", "dgx-h100", "--gpus", "64",
                                 "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=START_TIMEOUT_S)
        assert second.returncode == 1, second
        assert f"in use by another gangplace server (pid {first.proc.pid}: " in second.stderr, second.stderr
        assert "serve --synthetic dgx-h100 --gpus 64" in second.stderr
        assert first.get("/readyz")[0] == 200  # the first one is untouched
    finally:
        first.stop()
    # the holder is gone: the same command line starts now
    again = Server("--synthetic", "dgx-h100", "--gpus", "64")
    again.stop()


def test_the_lock_is_exclusive_within_one_process_and_released_by_release(tmp_path):
    lock = StateDirLock.acquire(tmp_path / "s")
    with pytest.raises(StateDirInUse, match=f"pid {os.getpid()}"):
        StateDirLock.acquire(tmp_path / "s")
    lock.release()
    StateDirLock.acquire(tmp_path / "s").release()


def test_the_default_state_dir_is_one_per_cluster_file_whatever_the_working_directory(tmp_path, monkeypatch):
    a, b = tmp_path / "x" / "cluster.yaml", tmp_path / "y" / "cluster.yaml"
    monkeypatch.chdir(tmp_path)
    from_root = default_state_dir(ClusterSource(file="x/cluster.yaml"))
    monkeypatch.chdir(tmp_path / "..")
    assert default_state_dir(ClusterSource(file=str(a))) == from_root
    assert default_state_dir(ClusterSource(file=str(b))) != from_root
    assert from_root.parent == Path(os.environ["XDG_STATE_HOME"]) / "gangplace"
    assert from_root.name.startswith("file-cluster-")
    assert (default_state_dir(ClusterSource(synthetic="dgx-h100", gpus=64)).name
            == "synthetic-dgx-h100-64gpus-fill0.6-seed1")


def test_state_dir_none_means_ephemeral_and_ephemeral_with_a_state_dir_is_refused(tmp_path):
    cfg = load_config(None, {"state_dir": "none"})
    assert cfg.ephemeral and cfg.state_dir is None
    with pytest.raises(Exception, match="ephemeral mode keeps no journal") as e:
        load_config(None, {"state_dir": str(tmp_path), "ephemeral": True})
    assert e.value.field == "config.state_dir"
    assert not ServeConfig().ephemeral
