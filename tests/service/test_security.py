"""Security beyond tests/service/test_tls.py (which covers TLS and mTLS on both ports, refused
plaintext, wrong CAs): loopback by default, least-privilege RBAC and hardened containers in
deploy/, and no key material in the logs of a real ``gangplace serve`` run with TLS at debug level.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.client import GangplaceClient, ServiceError
from gangplace.service.config import DEFAULT_GRPC_LISTEN, DEFAULT_HTTP_LISTEN, ServeConfig, load_config
from gangplace.service.testing import running_service
from gangplace.service.tls import ClientTLS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# `gangplace` as installed (.venv/bin/gangplace runs exactly this entry point)
GANGPLACE = [sys.executable, "-m", "gangplace.service.cli"]


# ---------------------------------------------------------------------- loopback by default
def _listening(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            if width == 8:
                out.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                v6 = ipaddress.IPv6Address(words)
                out.add(str(v6.ipv4_mapped or v6))  # gRPC binds ::ffff:127.0.0.1 on a dual-stack socket
    return out


def test_the_defaults_listen_on_loopback_only():
    cfg = load_config(None, {})
    assert cfg.grpc_listen == DEFAULT_GRPC_LISTEN and cfg.http_listen == DEFAULT_HTTP_LISTEN
    for addr in (cfg.grpc_listen, cfg.http_listen):
        host = addr.rpartition(":")[0].strip("[]")
        assert ipaddress.ip_address(host).is_loopback, addr


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_a_started_service_listens_on_loopback_on_both_ports():
    # the default hosts, port 0: what `gangplace serve` binds without --*-listen
    grpc_host = DEFAULT_GRPC_LISTEN.rpartition(":")[0]
    http_host = DEFAULT_HTTP_LISTEN.rpartition(":")[0]
    cfg = ServeConfig(grpc_listen=f"{grpc_host}:0", http_listen=f"{http_host}:0", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=64, fill=0.0))) as svc:
        for port in (svc.grpc_port, svc.http_port):
            addrs = _listening(port)
            assert addrs, f"nothing listens on {port}"
            assert all(ipaddress.ip_address(a).is_loopback for a in addrs), addrs
        other = _non_loopback_address()
        if other is not None:  # the machine has another interface: nothing answers there
            for port in (svc.grpc_port, svc.http_port):
                with pytest.raises(OSError):
                    socket.create_connection((other, port), timeout=2).close()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(addr).is_loopback else addr


def test_the_shipped_kubernetes_config_keeps_the_extender_and_grpc_on_loopback():
    svc = yaml.safe_load((DEPLOY / "base" / "gangplace.yaml").read_text())
    for key in ("http_listen", "grpc_listen"):
        host = svc[key].rpartition(":")[0].strip("[]")
        assert ipaddress.ip_address(host).is_loopback, (key, svc[key])
    # only the metrics listener faces the pod network, for Prometheus
    assert not ipaddress.ip_address(svc["metrics_listen"].rpartition(":")[0]).is_loopback


# ---------------------------------------------------------------------- RBAC and containers
# every permission gangplace and its kube-scheduler need, and nothing else
NEEDED = {
    ("", "nodes"): {"get", "list", "watch"},
    ("", "pods"): {"get", "list", "watch"},
    ("scheduling.x-k8s.io", "podgroups"): {"get", "list", "watch"},
    ("scheduling.volcano.sh", "podgroups"): {"get", "list", "watch"},
    ("scheduling.k8s.io", "podgroups"): {"get", "list", "watch"},
    ("scheduling.k8s.io", "workloads"): {"get", "list", "watch"},
    **{("resource.k8s.io", r): {"get", "list", "watch"}  # DRA: the nodes' GPUs and the pods' claims, read only
       for r in ("resourceslices", "resourceclaims", "resourceclaimtemplates", "deviceclasses")},
    ("scheduling.x-k8s.io", "podgroups/status"): {"patch"},  # phase "Scheduling" once the gang is bound
    ("", "pods/binding"): {"create"},
    ("", "pods/eviction"): {"create"},
    ("", "events"): {"create", "patch", "update"},
    ("events.k8s.io", "events"): {"create", "patch", "update"},
    ("coordination.k8s.io", "leases"): {"create", "get", "update"},
}
BUILT_IN_ROLES = {"system:kube-scheduler", "system:volume-scheduler", "extension-apiserver-authentication-reader"}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "*", "deletecollection"}


def deploy_objects() -> list[dict]:
    """Every whole API object under deploy/ (not the kustomizations, their patches or config files)."""
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name.endswith("-patch.yaml"):
            continue
        out += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and "kind" in d]
    return out


def test_rbac_grants_exactly_the_needed_verbs_and_no_wildcards():
    roles = [o for o in deploy_objects() if o.get("kind") in ("Role", "ClusterRole")]
    assert roles, "deploy/ has roles"
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        assert not role.get("aggregationRule"), "no aggregated roles: they grow silently"
        for rule in role.get("rules", []):
            assert not rule.get("nonResourceURLs"), rule
            groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
            for field in (groups, resources, verbs, rule.get("resourceNames", [])):
                assert not any("*" in x for x in field), f"wildcard in {role['metadata']['name']}: {rule}"
            assert not set(verbs) & DANGEROUS_VERBS, rule
            for g in groups:
                for r in resources:
                    granted.setdefault((g, r), set()).update(verbs)
    extra = {k: v - NEEDED.get(k, set()) for k, v in granted.items() if v - NEEDED.get(k, set())}
    assert not extra, f"more than needed: {extra}"
    assert not any(r in ("secrets", "configmaps", "serviceaccounts/token", "clusterroles", "clusterrolebindings",
                         "roles", "rolebindings") for _, r in granted), "no access to secrets or RBAC objects"
    must = {("", "pods/binding"), ("", "pods/eviction"), ("", "nodes"), ("", "pods")}
    assert must <= set(granted), "what the extender cannot work without"


def test_bindings_give_roles_only_to_the_gangplace_service_account_and_never_cluster_admin():
    objs = deploy_objects()
    own_roles = {o["metadata"]["name"] for o in objs if o.get("kind") in ("Role", "ClusterRole")}
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs
                if o.get("kind") == "ServiceAccount"}
    bindings = [o for o in objs if o.get("kind") in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for b in bindings:
        ref = b["roleRef"]["name"]
        assert ref in own_roles | BUILT_IN_ROLES, f"{b['metadata']['name']} binds {ref}"
        assert ref not in ("cluster-admin", "admin", "edit", "system:masters")
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount" and (s.get("namespace"), s["name"]) in accounts, s


def test_containers_run_unprivileged_with_a_read_only_root():
    deps = [o for o in deploy_objects() if o.get("kind") == "Deployment"]
    assert deps
    for dep in deps:
        spec = dep["spec"]["template"]["spec"]
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec.get("serviceAccountName") == "gangplace"
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True and sc.get("allowPrivilegeEscalation") is False, c["name"]
            assert sc.get("readOnlyRootFilesystem") is True and "ALL" in sc.get("capabilities", {}).get("drop", [])
            assert not sc.get("privileged"), c["name"]
            assert not c.get("ports") or all(p.get("hostPort") is None for p in c["ports"])


# ---------------------------------------------------------------------- no secrets in the logs
def _pki(tmp: Path) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("sec-ca")).issuer_name(name("sec-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    out = {"ca": tmp / "ca.crt"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(f"sec-{who}")).issuer_name(name("sec-ca"))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        out[f"{who}_crt"], out[f"{who}_key"] = tmp / f"{who}.crt", tmp / f"{who}.key"
        out[f"{who}_crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        out[f"{who}_der"] = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def _key_fragments(pem_path: str, der: bytes) -> list[str]:
    """Strings that would betray the key: its PEM body lines, the whole body, hex and the marker."""
    body = [line for line in Path(pem_path).read_text().splitlines() if line and not line.startswith("-----")]
    return body + ["".join(body), der.hex(), der.hex().upper(), "PRIVATE KEY"]


@pytest.mark.slow
def test_serving_with_mtls_at_debug_level_never_logs_key_material(tmp_path):
    pki = _pki(tmp_path)
    cmd = [*GANGPLACE, "serve", "--synthetic", "dgx-h100", "--gpus", "64", "--placer", "heuristic",
           "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-level", "debug",
           "--tls-cert", pki["server_crt"], "--tls-key", pki["server_key"], "--tls-client-ca", pki["ca"],
           "--tls-require-client-cert"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    banner = []
    try:
        for _ in range(3):
            banner.append(proc.stdout.readline())
        text = "".join(banner)
        grpc_port = int(re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", text).group(1))
        http_port = int(re.search(r"HTTP\s+https://127\.0\.0\.1:(\d+)", text).group(1))
        good = ClientTLS(ca=pki["ca"], cert=pki["client_crt"], key=pki["client_key"])
        with GangplaceClient(f"127.0.0.1:{grpc_port}", tls=good, timeout_s=10) as c:
            c.ping()
            c.snapshot(include_nodes=False)
        for bad in (None, ClientTLS(ca=pki["ca"])):  # plaintext, then TLS without a client certificate
            with GangplaceClient(f"127.0.0.1:{grpc_port}", tls=bad, timeout_s=3) as c:
                with pytest.raises(ServiceError):
                    c.ping()
        with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/metrics", timeout=10,
                                    context=good.ssl_context()) as r:
            metrics = r.read().decode()
        with pytest.raises((OSError, ssl.SSLError)):
            urllib.request.urlopen(f"https://127.0.0.1:{http_port}/healthz", timeout=5,
                                   context=ClientTLS(ca=pki["ca"]).ssl_context())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    logs = "".join(banner) + out + err + metrics
    assert '"msg":"serving"' in err.replace(" ", ""), "the run was logged"
    for key, der in (("server_key", pki["server_der"]),):
        for fragment in _key_fragments(pki[key], der):
            assert fragment not in logs, f"key material in the logs: {fragment[:20]}..."
