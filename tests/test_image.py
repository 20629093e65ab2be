"""The container image (Dockerfile, `make image`): built here and its entry point run.

No registry is reachable from these machines, so `deploy/image/build.sh` builds on a Debian
bookworm base made by mmdebstrap. Where containers cannot start (a sandbox that refuses
setrlimit to the OCI runtime), the test records podman's exact error and runs the image's entry
point with buildah's chroot isolation instead: the image's own files, user and environment,
without an OCI runtime. Slow (~2 min warm, ~4 min cold): marked ``slow``, still run by make test.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from gangplace.service.testing import stop_process

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("buildah", "mmdebstrap")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
if MISSING and os.environ.get("CI") != "true":  # CI installs them (.ci/run): there the test must run
    pytest.skip(f"the image test needs {', '.join(MISSING)} (apt-get install -y buildah podman mmdebstrap)",
                allow_module_level=True)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image() -> str:
    res = subprocess.run([str(ROOT / "deploy/image/build.sh")], cwd=ROOT, capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def runner(image):
    """argv prefix that runs a command in the image: podman when it can start containers, else a chroot."""
    probe = subprocess.run(["podman", "run", "--rm", "--network", "host", image, "--version"],
                           capture_output=True, text=True, timeout=300) if shutil.which("podman") else None
    if probe is not None and probe.returncode == 0:
        yield ["podman", "run", "--rm", "--network", "host", image], None
        return
    why = (probe.stderr.strip() if probe is not None else "podman is not installed")
    ctr = subprocess.run(["buildah", "from", image], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield ["buildah", "run", "--isolation", "chroot", "--network", "host", ctr, "--"], why
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def test_the_image_carries_its_labels_user_and_entry_point(image):
    info = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True,
                                     text=True, check=True).stdout)
    cfg = info["OCIv1"]["config"]
    assert cfg["Entrypoint"] == ["gangplace"] and cfg["User"] == "65532:65532"
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == "gangplace"
    assert labels["org.opencontainers.image.version"] == image.rsplit(":", 1)[1]
    assert {"8888/tcp", "50051/tcp"} <= set(cfg.get("ExposedPorts", {}))


def test_the_entry_point_prints_the_version_as_a_non_root_user(runner, image):
    argv, why = runner
    if why:
        print(f"containers cannot start here, so the image runs under buildah's chroot isolation: {why}")
    cmd = argv + (["--version"] if argv[0] == "podman" else ["gangplace", "--version"])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"gangplace {image.rsplit(':', 1)[1]}"
    if argv[0] == "buildah":
        uid = subprocess.run(argv + ["id", "-u"], capture_output=True, text=True, timeout=60).stdout.strip()
        assert uid == "65532"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_in_the_image_answers_healthz(runner):
    argv, _ = runner
    http_port, grpc_port = _free_port(), _free_port()
    serve = ["serve", "--synthetic", "dgx-h100", "--gpus", "64", "--http-listen", f"127.0.0.1:{http_port}",
             "--grpc-listen", f"127.0.0.1:{grpc_port}"]
    cmd = argv + (serve if argv[0] == "podman" else ["gangplace", *serve])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, last = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError as e:
                last = e
                time.sleep(0.5)
        else:
            pytest.fail(f"/healthz never answered: {last}")
    finally:
        stop_process(proc)


# ------------------------------------------------------------------ the gangplace-scheduler image
@pytest.fixture(scope="module")
def scheduler_image() -> str:
    from tests.e2e.conftest import require_control_plane
    require_control_plane()  # the image is the `make kube` binary: fails in CI without it, skips elsewhere
    res = subprocess.run([str(ROOT / "deploy/image/build.sh"), "scheduler"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout.strip().splitlines()[-1]


def test_the_scheduler_image_is_the_plugin_build_as_a_non_root_user(scheduler_image):
    cfg = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", scheduler_image], capture_output=True,
                                    text=True, check=True).stdout)["OCIv1"]["config"]
    assert cfg["Entrypoint"] == ["gangplace-scheduler"] and cfg["User"] == "65532:65532"
    assert cfg["Labels"]["dev.gangplace.kubernetes-version"] == "v1.36.3"
    # the overlay that runs it names this image and this command
    overlay = (ROOT / "deploy/overlays/plugin/kustomization.yaml").read_text()
    assert f"value: {scheduler_image}" in overlay and "[gangplace-scheduler, --config=" in overlay


def test_the_scheduler_image_places_a_gang_on_the_real_control_plane(scheduler_image):
    """The image's own binary, run under buildah's chroot isolation as the image's user, is the
    scheduler of a real v1.36.3 control plane with gangplace beside it: a gang binds whole in one rack."""
    import tempfile

    from tests.e2e.conftest import BASE_NODES, bound
    from tests.e2e.harness import KUBE_BIN, ControlPlane, plugin_scheduler_config, wait_for
    from tests.e2e.test_gangs import create_gang, labels_of

    ctr = subprocess.run(["buildah", "from", scheduler_image], capture_output=True, text=True,
                         check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="gangplace-image-"))
    try:
        bins, cp_dir = work / "bin", work / "cp"
        bins.mkdir()
        for comp in sorted(p.name for p in KUBE_BIN.iterdir() if p.name != "gangplace-scheduler"):
            (bins / comp).symlink_to(KUBE_BIN / comp)
        # the harness starts "gangplace-scheduler" from bins: this one runs the image's binary, with
        # the control plane's folder (config, kubeconfig, certs) made readable to the image's user
        wrapper = bins / "gangplace-scheduler"
        wrapper.write_text(f"#!/bin/sh\nchmod -R a+rX {work}\nexec buildah run --isolation chroot --network host "
                           f"-v {cp_dir}:{cp_dir}:ro {ctr} -- gangplace-scheduler \"$@\"\n")
        wrapper.chmod(0o755)
        cp = ControlPlane(workdir=cp_dir, bin_dir=bins).start()
        try:
            cp.add_nodes(BASE_NODES)
            cp.apply_rbac()
            cp.start_gangplace()
            cp.start_scheduler(plugin_scheduler_config(cp.kubeconfig("scheduler"), cp.grpc_addresses["gangplace"]),
                               name="gangplace-scheduler", binary="gangplace-scheduler")
            pid = cp.procs["gangplace-scheduler"].popen.pid  # the wrapper exec'd buildah: the image runs
            assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"buildah", b"run"]
            kube = cp.admin
            kube.ensure_namespace("img")
            create_gang(kube, "img", "g", 4)
            nodes = wait_for(lambda: (b := bound(kube, "img", "g")) and len(b) == 4 and b, 60, "gang g bound")
            racks = {labels_of(kube)[n]["network.topology.nvidia.com/leaf"] for n in nodes.values()}
            assert len(racks) == 1, nodes
        finally:
            cp.stop()
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
