"""A throwaway Kubernetes v1.36 control plane on 127.0.0.1, for the e2e tests and benchmarks.

``make kube`` builds the components (one multi-call binary, links in ``.kube/bin/``); this module
starts them as child processes, each in its own session, with throwaway certificates in a temp
dir, and stops them by PID:

- ``ControlPlane.start()``: etcd (3.6, fsync off) + kube-apiserver (RBAC on, service-account
  issuer and keys, the ``ServiceAccount``, ``TaintNodesByCondition`` and ``PodGroupProtection``
  admission plugins off because no controller removes what they add, no endpoint reconciler),
  then ``start_scheduler(config)`` runs kube-scheduler as ``system:kube-scheduler`` (a client
  certificate) with a ``KubeSchedulerConfiguration`` dict (``scheduler_config()`` reads the
  shipped ``deploy/base/scheduler-config.yaml`` and changes only the kubeconfig, leader election and
  the extender URL).
- ``Kube``: a small JSON client (urllib3, pooled) for the admin and for tests; ``apply_node()``
  creates a fake GPU Node by server-side apply and writes its status (Ready, capacity and
  allocatable) through the status subresource; ``reap()`` force-deletes Terminating pods, the
  kubelet's part; ``gpu_pod()`` builds a gang member.
- ``start_gangplace()`` runs ``gangplace serve`` under the ``deploy/base/rbac.yaml`` ServiceAccount (a
  TokenRequest token); ``start_floor()`` runs the no-logic extender of ``floor_extender.py``.

Run by hand (prints the kubeconfig and keeps running until Ctrl-C)::

    .venv/bin/python tests/e2e/harness.py --nodes 16
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import urllib3
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE_BIN = Path(os.environ.get("GANGPLACE_KUBE_BIN", REPO / ".kube" / "bin"))
COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler", "kubectl")
GPU = "nvidia.com/gpu"
# topograph-v1 label keys (service/topology_presets.py): level names "block" and "leaf"
BLOCK_LABEL = "network.topology.nvidia.com/block"
LEAF_LABEL = "network.topology.nvidia.com/leaf"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"   # never pulled: there are no kubelets
# the alpha Workload API of v1.36 (pkg/features/kube_features.go): the API on the apiserver (which drops
# the fields of a gate that is off), gang and topology-aware workload scheduling in the scheduler
WORKLOAD_GATES = "GenericWorkload=true,GangScheduling=true,TopologyAwareWorkloadScheduling=true"
WORKLOAD_API = "scheduling.k8s.io/v1alpha2=true"


def missing_components(bin_dir: Path = KUBE_BIN) -> list[str]:
    """Components of ``make kube`` not found (empty when the control plane can start)."""
    return [c for c in COMPONENTS if not os.access(bin_dir / c, os.X_OK)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessExited(RuntimeError):
    """A component died while we waited for it: no point in polling on."""


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as e:  # noqa: BLE001 -- still starting: keep polling, report the last one
            last_exc = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


# ------------------------------------------------------------------------------ certificates
@dataclass
class PKI:
    """A CA, the apiserver's serving certificate, client certificates and the service-account key.

    EC P-256 keys: generating them takes milliseconds (RSA-2048 takes ~50 ms each)."""

    dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def create(self, clients: Mapping[str, tuple[str, str | None]]) -> "PKI":
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        import ipaddress

        self.dir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        later = now + dt.timedelta(days=2)

        def write_key(name, key):
            path = self.dir / f"{name}.key"
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            self.files[f"{name}.key"] = path

        def write_cert(name, cert):
            path = self.dir / f"{name}.crt"
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            self.files[f"{name}.crt"] = path

        def subject(cn, org=None):
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
            if org:
                attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
            return x509.Name(attrs)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = subject("gangplace-e2e-ca")
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(later)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        write_key("ca", ca_key)
        write_cert("ca", ca)

        def issue(name, cn, org=None, server=False):
            key = ec.generate_private_key(ec.SECP256R1())
            b = (x509.CertificateBuilder().subject_name(subject(cn, org)).issuer_name(ca_name)
                 .public_key(key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now).not_valid_after(later)
                 .add_extension(x509.ExtendedKeyUsage(
                     [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                     critical=False))
            if server:
                b = b.add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default",
                                               "kubernetes.default.svc")]
                    + [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.0.0.1")]),
                    critical=False)
            write_key(name, key)
            write_cert(name, b.sign(ca_key, hashes.SHA256()))

        issue("apiserver", "kube-apiserver", server=True)
        for name, (cn, org) in clients.items():
            issue(name, cn, org)
        # service-account token signing key (ES256) and its public half
        sa = ec.generate_private_key(ec.SECP256R1())
        (self.dir / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))
        (self.dir / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.files["sa.key"], self.files["sa.pub"] = self.dir / "sa.key", self.dir / "sa.pub"
        return self


# ------------------------------------------------------------------------------ HTTP client
class ApiError(Exception):
    def __init__(self, status: int, body: str, method: str, path: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Kube:
    """A minimal JSON client of the API server: enough for tests, no code generation."""

    def __init__(self, server: str, ca: Path, cert: Path | None = None, key: Path | None = None,
                 token: str | None = None):
        self.server = server.rstrip("/")
        self.http = urllib3.PoolManager(maxsize=8, cert_reqs="CERT_REQUIRED", ca_certs=str(ca),
                                        cert_file=str(cert) if cert else None,
                                        key_file=str(key) if key else None)
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body=None, *, content_type: str = "application/json",
                params: Mapping | None = None, timeout: float = 30, ok_missing: bool = False):
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self.server + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        r = self.http.request(method, url, body=data, headers=headers, timeout=timeout, retries=False)
        if r.status == 404 and ok_missing:
            return None
        if r.status >= 300:
            raise ApiError(r.status, r.data.decode(errors="replace"), method, path)
        return json.loads(r.data) if r.data else None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def create(self, path, obj, **kw):
        return self.request("POST", path, obj, **kw)

    def delete(self, path, *, grace: int | None = None, **kw):
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace} if grace is not None else None
        return self.request("DELETE", path, body, ok_missing=True, **kw)

    def apply(self, path, obj, *, manager: str = "gangplace-e2e"):
        """Server-side apply (force) of ``obj`` at ``path`` (a resource or its status)."""
        return self.request("PATCH", path, obj, content_type="application/apply-patch+yaml",
                            params={"fieldManager": manager, "force": "true"})

    # --- pods
    def pods(self, namespace: str | None = None, selector: str | None = None) -> list[dict]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return self.get(path, params={"labelSelector": selector} if selector else None)["items"]

    def create_pod(self, namespace: str, pod: dict) -> dict:
        return self.create(f"/api/v1/namespaces/{namespace}/pods", pod)

    def delete_pod(self, namespace: str, name: str, grace: int | None = None):
        return self.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", grace=grace)

    def reap(self, namespace: str | None = None) -> int:
        """Force-delete Terminating pods (the kubelet's part: no kubelet runs here). Returns how many."""
        n = 0
        for pod in self.pods(namespace):
            if pod["metadata"].get("deletionTimestamp"):
                self.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace=0)
                n += 1
        return n

    def ensure_namespace(self, name: str):
        try:
            self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiError as e:
            if e.status != 409:
                raise

    # --- nodes
    def apply_node(self, name: str, *, labels: Mapping[str, str] | None = None, gpus: int = 8,
                   cpu: str = "112", memory: str = "2000Gi", pods: int = 110, ready: bool = True):
        """A fake GPU Node: object by server-side apply, then its status through the status subresource."""
        self.apply(f"/api/v1/nodes/{name}", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": "amd64", **(labels or {})}},
        })
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        resources = {GPU: str(gpus), "cpu": cpu, "memory": memory, "pods": str(pods)}
        self.apply(f"/api/v1/nodes/{name}/status", {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady", "message": "fake node (gangplace e2e)",
                                       "lastHeartbeatTime": now, "lastTransitionTime": now}]},
        })

    def delete_node(self, name: str):
        return self.delete(f"/api/v1/nodes/{name}")

    def nodes(self) -> list[dict]:
        return self.get("/api/v1/nodes")["items"]


def topology_nodes(blocks: int, racks: int, nodes_per_rack: int, *, prefix: str = "") -> list[tuple[str, dict]]:
    """(name, labels) of a block x rack x node cluster: ``b0-r1-n2`` in leaf ``b0-r1`` of block ``b0``."""
    out = []
    for b in range(blocks):
        for r in range(racks):
            for n in range(nodes_per_rack):
                block, leaf = f"{prefix}b{b}", f"{prefix}b{b}-r{r}"
                out.append((f"{leaf}-n{n}", {BLOCK_LABEL: block, LEAF_LABEL: leaf}))
    return out


def gpu_pod(name: str, *, gpus: int = 8, gang: str | None = None, size: int | None = None,
            scheduler: str = "gangplace", priority_class: str | None = None,
            labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
            node_name: str | None = None) -> dict:
    """A pod requesting ``gpus`` GPUs (1 CPU, 1 GiB), optionally a member of gang ``gang`` of ``size``."""
    meta_labels = dict(labels or {})
    if gang:
        meta_labels.update({"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)})
    spec = {
        "schedulerName": scheduler,
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": PAUSE_IMAGE, "resources": {
            "requests": {GPU: str(gpus), "cpu": "1", "memory": "1Gi"}, "limits": {GPU: str(gpus)}}}],
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    if node_name:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": meta_labels, "annotations": dict(annotations or {})},
            "spec": spec}


def pod_gpus(pod: Mapping) -> int:
    return sum(int(c.get("resources", {}).get("requests", {}).get(GPU, 0)) for c in pod["spec"]["containers"])


# ------------------------------------------------------------------------------ processes
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Stop by PID (its own process group: nothing else is touched)."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], logdir: Path, env: Mapping[str, str] | None = None) -> Proc:
    log = logdir / f"{name}.log"
    out = open(log, "ab")
    try:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, **(env or {})})
    finally:
        out.close()
    return Proc(name, popen, log)


def write_kubeconfig(path: Path, server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
                     token: str | None = None, user: str = "user") -> Path:
    creds = {"token": token} if token else {"client-certificate": str(cert), "client-key": str(key)}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
    }))
    return path


def scheduler_config(kubeconfig: Path, extender_url: str | None, *, extender: bool = True,
                     qps: float | None = None) -> dict:
    """The shipped deploy/base/scheduler-config.yaml, changed only where a test must: its kubeconfig,
    leader election off (one scheduler), the extender's URL (or no extender: the scheduler alone),
    and, for benchmarks, the client's QPS (the default 50/s would cap every variant)."""
    cfg = yaml.safe_load((REPO / "deploy" / "base" / "scheduler-config.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
    cfg["leaderElection"] = {**cfg.get("leaderElection", {}), "leaderElect": False}
    if not extender:
        cfg.pop("extenders", None)
    elif extender_url:
        cfg["extenders"][0]["urlPrefix"] = extender_url
    if qps:
        cfg["clientConnection"].update({"qps": qps, "burst": int(qps)})
    return cfg


def plugin_scheduler_config(kubeconfig: Path, grpc_address: str, *, qps: float | None = None,
                            permit_timeout_s: float | None = None) -> dict:
    """The shipped deploy/overlays/plugin/scheduler-config.yaml for the gangplace-scheduler, changed only
    where a test must: its kubeconfig, leader election off, gangplace's gRPC address."""
    cfg = copy.deepcopy(yaml.safe_load((REPO / "deploy" / "overlays" / "plugin" / "scheduler-config.yaml").read_text()))
    cfg.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
    cfg["leaderElection"] = {**cfg.get("leaderElection", {}), "leaderElect": False}
    for pc in cfg["profiles"][0]["pluginConfig"]:
        if pc["name"] == "Gangplace":
            pc["args"]["address"] = grpc_address
            if permit_timeout_s:
                pc["args"]["permitTimeoutSeconds"] = permit_timeout_s
    if qps:
        cfg["clientConnection"].update({"qps": qps, "burst": int(qps)})
    return cfg


class ControlPlane:
    """etcd + kube-apiserver (+ kube-scheduler, gangplace, the floor extender on demand)."""

    CLIENTS = {  # file name -> (CN, O)
        "admin": ("gangplace-e2e-admin", "system:masters"),
        "scheduler": ("system:kube-scheduler", None),
        "controller-manager": ("system:kube-controller-manager", None),
    }

    def __init__(self, workdir: Path | None = None, bin_dir: Path = KUBE_BIN, keep: bool = False, *,
                 workload_api: bool = False):
        self.bin_dir = Path(bin_dir)
        # the alpha Workload API on (apiserver, scheduler and controller manager alike)
        self.gates = [f"--feature-gates={WORKLOAD_GATES}"] if workload_api else []
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="gangplace-e2e-"))
        self.keep = keep or bool(os.environ.get("GANGPLACE_E2E_KEEP"))   # keep logs and certs
        self.procs: dict[str, Proc] = {}
        self.grpc_addresses: dict[str, str] = {}  # gangplace name -> its gRPC host:port (kept across restarts)
        self.scheduler_ports: dict[str, int] = {}  # scheduler name -> its secure port (/metrics, /readyz)
        self.pki = PKI(self.dir / "pki")
        self.api_port = 0
        self.admin: Kube | None = None

    # --- paths
    def bin(self, component: str) -> str:
        return str(self.bin_dir / component)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.dir / f"{user}.kubeconfig"

    # --- lifecycle
    def start(self, timeout: float = 60) -> "ControlPlane":
        missing = missing_components(self.bin_dir)
        if missing:
            raise FileNotFoundError(f"{', '.join(missing)} not found in {self.bin_dir}: run `make kube`")
        t0 = time.monotonic()
        self.pki.create(self.CLIENTS)
        f = self.pki.files
        etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()
        self.procs["etcd"] = spawn("etcd", [
            self.bin("etcd"), "--name", "e2e", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"e2e=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ], self.dir)
        self.procs["kube-apiserver"] = spawn("kube-apiserver", [
            self.bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.api_port}",
            f"--tls-cert-file={f['apiserver.crt']}", f"--tls-private-key-file={f['apiserver.key']}",
            f"--client-ca-file={f['ca.crt']}",
            # a front-proxy CA, so delegating components (the scheduler) find one; no proxy uses it
            f"--requestheader-client-ca-file={f['ca.crt']}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={f['sa.pub']}", f"--service-account-signing-key-file={f['sa.key']}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # no controller manager removes what these add (tokens, taints, finalizers)
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition,PodGroupProtection",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.dir / 'apiserver-certs'}",
            "--profiling=false", "--v=1", *self.gates,
            *([f"--runtime-config={WORKLOAD_API}"] if self.gates else []),
        ], self.dir)
        write_kubeconfig(self.kubeconfig("admin"), self.server, f["ca.crt"], cert=f["admin.crt"], key=f["admin.key"])
        write_kubeconfig(self.kubeconfig("scheduler"), self.server, f["ca.crt"],
                         cert=f["scheduler.crt"], key=f["scheduler.key"], user="system:kube-scheduler")
        write_kubeconfig(self.kubeconfig("controller-manager"), self.server, f["ca.crt"],
                         cert=f["controller-manager.crt"], key=f["controller-manager.key"],
                         user="system:kube-controller-manager")
        self.admin = Kube(self.server, f["ca.crt"], f["admin.crt"], f["admin.key"])
        self._wait_healthy("kube-apiserver", lambda: self.admin.http.request(
            "GET", self.server + "/readyz", timeout=2, retries=False).status == 200, timeout)
        # the bootstrap RBAC roles and the default namespace exist once /readyz says so
        wait_for(lambda: self.admin.get("/api/v1/namespaces/default", ok_missing=True), timeout, "namespace default")
        self.startup_s = time.monotonic() - t0
        return self

    def _wait_healthy(self, name: str, probe: Callable[[], object], timeout: float):
        def check():
            proc = self.procs[name]
            if not proc.alive():
                raise ProcessExited(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            return probe()
        try:
            wait_for(check, timeout, f"{name} to be ready")
        except RuntimeError:
            raise
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{name} log:\n{self.procs[name].tail()}") from None

    def start_scheduler(self, config: dict, *, name: str = "kube-scheduler", timeout: float = 60,
                        binary: str = "kube-scheduler", extra_args: Iterable[str] = ()) -> Proc:
        """kube-scheduler as system:kube-scheduler with ``config`` (see ``scheduler_config``);
        ``binary="gangplace-scheduler"`` runs the build with the Gangplace plugin instead;
        ``extra_args`` are added to its command line (e.g. ``--feature-gates=...``)."""
        path = self.dir / f"{name}-config.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        kc = self.kubeconfig("scheduler")
        proc = self.procs[name] = spawn(name, [
            self.bin(binary), f"--config={path}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}", "--v=1", *self.gates, *extra_args,
        ], self.dir)
        self.scheduler_ports[name] = port
        insecure = urllib3.PoolManager(cert_reqs="CERT_NONE")
        urllib3.disable_warnings()
        self._wait_healthy(name, lambda: insecure.request("GET", f"https://127.0.0.1:{port}/readyz",
                                                          timeout=2, retries=False).status == 200, timeout)
        return proc

    def start_controller_manager(self, controllers: str = "*", timeout: float = 60) -> Proc:
        if not os.access(self.bin_dir / "kube-controller-manager", os.X_OK):
            raise FileNotFoundError("kube-controller-manager not built")
        kc = self.kubeconfig("controller-manager")
        f = self.pki.files
        proc = self.procs["kube-controller-manager"] = spawn("kube-controller-manager", [
            self.bin("kube-controller-manager"), f"--kubeconfig={kc}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", f"--controllers={controllers}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            f"--service-account-private-key-file={f['sa.key']}", f"--root-ca-file={f['ca.crt']}",
            "--use-service-account-credentials=true", "--v=1", *self.gates,  # each controller under its own identity
        ], self.dir)
        time.sleep(0.5)
        if not proc.alive():
            raise RuntimeError(f"kube-controller-manager exited:\n{proc.tail()}")
        return proc

    def stop_component(self, name: str, sig: int = signal.SIGTERM):
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop(sig)

    def stop(self):
        # reverse start order: clients first, etcd last
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        self.procs.clear()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- tools
    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.bin("kubectl"), f"--kubeconfig={self.kubeconfig('admin')}", *args],
                              capture_output=True, text=True, check=check, input=input, timeout=120)

    def add_nodes(self, nodes: Iterable[tuple[str, Mapping[str, str]]], gpus: int = 8) -> list[str]:
        names = []
        for name, labels in nodes:
            self.admin.apply_node(name, labels=labels, gpus=gpus)
            names.append(name)
        return names

    def service_account_token(self, namespace: str, name: str, seconds: int = 7200) -> str:
        """A TokenRequest token for a ServiceAccount (what a projected token volume would hold)."""
        r = self.admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}})
        return r["status"]["token"]

    def start_gangplace(self, *, name: str = "gangplace", http_port: int | None = None,
                        timeout: float = 60, extra: Iterable[str] = (), grpc_port: int | None = None) -> tuple[Proc, str]:
        """``gangplace serve --kubeconfig`` under the deploy/base/rbac.yaml ServiceAccount
        (apply it first: ``apply_rbac()``). Returns (process, extender URL); its gRPC address
        is ``self.grpc_addresses[name]``."""
        kc = self.kubeconfig(name)
        if not kc.exists():
            token = self.service_account_token("gangplace-system", "gangplace")
            write_kubeconfig(kc, self.server, self.pki.files["ca.crt"], token=token,
                             user="system:serviceaccount:gangplace-system:gangplace")
        http_port = http_port or free_port()
        gangplace = shutil.which("gangplace", path=str(Path(sys.executable).parent)) or "gangplace"
        proc = self.procs[name] = spawn(name, [
            gangplace, "serve", "--kubeconfig", str(kc), "--http-listen", f"127.0.0.1:{http_port}",
            "--grpc-listen", self.grpc_addresses.setdefault(name, f"127.0.0.1:{grpc_port or free_port()}"), *extra,
        ], self.dir, env={"NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))})
        http = urllib3.PoolManager()
        self._wait_healthy(name, lambda: http.request("GET", f"http://127.0.0.1:{http_port}/readyz",
                                                      timeout=2, retries=False).status == 200, timeout)
        return proc, f"http://127.0.0.1:{http_port}"

    def start_floor(self, *, timeout: float = 30) -> tuple[Proc, str]:
        """The no-logic extender (floor_extender.py) as the admin. Returns (process, URL)."""
        port = free_port()
        f = self.pki.files
        proc = self.procs["floor-extender"] = spawn("floor-extender", [
            sys.executable, str(Path(__file__).with_name("floor_extender.py")), "--port", str(port),
            "--server", self.server, "--ca", str(f["ca.crt"]), "--cert", str(f["admin.crt"]),
            "--key", str(f["admin.key"]),
        ], self.dir)
        http = urllib3.PoolManager()
        self._wait_healthy("floor-extender", lambda: http.request(
            "GET", f"http://127.0.0.1:{port}/healthz", timeout=2, retries=False).status == 200, timeout)
        return proc, f"http://127.0.0.1:{port}"

    def apply_rbac(self):
        self.kubectl("apply", "-f", str(REPO / "deploy" / "base" / "rbac.yaml"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start a throwaway control plane (etcd, kube-apiserver, "
                                            "kube-scheduler, gangplace) until Ctrl-C.")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--racks", type=int, default=2, help="racks per block")
    p.add_argument("--nodes", type=int, default=4, help="nodes per rack")
    p.add_argument("--no-gangplace", action="store_true", help="the scheduler without the extender")
    p.add_argument("--dir", type=Path, help="work dir (kept): certs, kubeconfigs, logs")
    p.add_argument("--workload-api", action="store_true", help="the alpha Workload API on (scheduling.k8s.io/v1alpha2)")
    args = p.parse_args(argv)
    cp = ControlPlane(args.dir, keep=args.dir is not None, workload_api=args.workload_api).start()

    def stop_on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop_on_term)
    try:
        cp.add_nodes(topology_nodes(args.blocks, args.racks, args.nodes))
        url = None
        if not args.no_gangplace:
            cp.apply_rbac()
            _, url = cp.start_gangplace()
        cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), url, extender=url is not None))
        print(f"control plane up in {cp.startup_s:.1f} s; logs and certs in {cp.dir}")
        print(f"  export KUBECONFIG={cp.kubeconfig('admin')}")
        print(f"  {cp.bin('kubectl')} get nodes -L {BLOCK_LABEL},{LEAF_LABEL}")
        if url:
            print(f"  gangplace extender at {url} (curl {url}/metrics)")
        print("Ctrl-C stops everything.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
