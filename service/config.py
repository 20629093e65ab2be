"""The service configuration: one typed dataclass, every default in this module, validated once.

Sources, lowest precedence first: the defaults below, a YAML/JSON file (``--config``), then the
command-line flags that were given. ``load_config`` checks everything before the server starts
and raises ``ConfigError`` naming the field (``config.tls.cert: file not found: ...``), so a bad
config fails at start, never on the first request.

YAML shape (every key optional)::

    cluster:                     # exactly one source
      synthetic: dgx-h100        # or file: cluster.yaml, or kubeconfig: ~/.kube/config, or in_cluster: true
      gpus: 2048
      fill: 0.6
      seed: 1
      topology_levels: auto      # Kubernetes: label preset, "key1,key2,...", auto, or a list of
                                 # presets, label keys and {name: ..., label: ...} levels, top first
      gpu_resource: nvidia.com/gpu
    grpc_listen: 127.0.0.1:50051
    http_listen: 127.0.0.1:8888
    metrics_listen: 0.0.0.0:9090 # optional: /metrics on its own address too (default: only on http_listen)
    state_dir: /var/lib/gangplace    # file/synthetic mode: the bind journal (default: see resolve_state_dir)
    ephemeral: false             # true (or state_dir: none): no journal, binds do not survive a restart
    placer: auto
    time_limit_ms: 100
    reservation_ttl_s: 30
    request_timeout_s: 10
    http_max_body_bytes: 67108864
    grpc_max_message_bytes: 67108864
    shutdown_grace_s: 5
    log_level: info
    tls:                         # both ports; omit for plaintext
      cert: server.crt
      key: server.key
      client_ca: ca.crt          # verify client certificates against this CA
      require_client_cert: true  # mTLS: refuse clients without a valid certificate
    extender:                    # the kube-scheduler extender (ExtenderSettings)
      bind_timeout_s: 25
      gang_timeout_s: 300
      report_all_failed: false
      reservation_blocked_error: false
      evict_partial_gangs: true
      single_pod_one_node: true
    dra:                         # Kubernetes: GPUs through Dynamic Resource Allocation (resource.k8s.io/v1)
      driver: gpu.nvidia.com     # ResourceSlices of this driver are the nodes' GPUs
      device_classes: gpu.nvidia.com   # claims on these DeviceClasses (comma-separated) count as GPUs
      product_attribute: productName   # device attribute with the GPU product
      topology_attributes: clique=gpu.nvidia.com/cliqueId   # levels from device attributes (default: none)
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gangplace.engine.model.errors import GangplaceError, InvalidFile
from gangplace.engine.model.formats import read_document
from gangplace.engine.model.synthetic import MAX_GPUS, MIN_GPUS, PRESETS

DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8888"
PLACERS = ("auto", "heuristic", "cpsat")
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCE_KEYS = ("synthetic", "file", "kubeconfig", "in_cluster")
DEFAULT_SYNTHETIC = "dgx-h100"  # the cluster when no source is given


class ConfigError(GangplaceError):
    """The service configuration is invalid (raised at start, before anything listens)."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert: str | None = None  # PEM server certificate (chain)
    key: str | None = None  # PEM private key
    client_ca: str | None = None  # PEM CA bundle that client certificates must chain to
    require_client_cert: bool = False  # mTLS: refuse clients without a valid certificate

    @property
    def enabled(self) -> bool:
        return self.cert is not None


@dataclass(frozen=True, slots=True)
class ClusterSource:
    """Where the live cluster comes from: exactly one of the four."""

    synthetic: str | None = None  # preset name (engine/model/synthetic.py)
    gpus: int = 2048  # synthetic: about this many GPUs
    fill: float = 0.6  # synthetic: background load
    seed: int = 1  # synthetic
    file: str | None = None  # cluster file (.yaml, .json, .parquet, .arrow)
    kubeconfig: str | None = None  # Kubernetes via a kubeconfig
    in_cluster: bool = False  # Kubernetes via the pod's service account
    # Kubernetes: a label preset name, comma-separated label keys, or auto; or a list (top first) of
    # presets, label keys and {name, label} mappings: explicit levels for labels no preset knows
    topology_levels: str | tuple = "auto"
    gpu_resource: str = "nvidia.com/gpu"  # Kubernetes: the extended resource counted as GPUs

    @property
    def kind(self) -> str:
        if self.kubeconfig or self.in_cluster:
            return "kubernetes"
        return "file" if self.file else "synthetic"


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    """The kube-scheduler extender's knobs (config key ``extender``); defaults match deploy/."""

    bind_timeout_s: float = 25.0  # a gang's binds wait this long for the rest; below the scheduler's httpTimeout
    gang_timeout_s: float = 300.0  # an incomplete gang's reservation is released after this
    report_all_failed: bool = False  # a placed member: list every other node in FailedNodes too
    reservation_blocked_error: bool = False  # kept out only by others' reservations: Error (retry soon), not FailedNodes
    evict_partial_gangs: bool = True  # preempt: evict the rest of a gang that a victim set breaks
    single_pod_one_node: bool = True  # a GPU pod of no gang: filter passes its best-fit node only (no prioritize call)


@dataclass(frozen=True, slots=True)
class DraSettings:
    """Dynamic Resource Allocation (config key ``dra``; service/dra.py, docs/kubernetes.md)."""

    driver: str = "gpu.nvidia.com"  # ResourceSlices of this driver are the nodes' GPUs
    device_classes: str = "gpu.nvidia.com"  # comma-separated DeviceClasses whose claims count as GPUs
    product_attribute: str = "productName"  # the device attribute naming the GPU product
    topology_attributes: str | None = None  # "name=attribute,...": topology levels from device attributes, top first

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.device_classes.split(",") if c.strip())


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """Bounded work per request (config key ``limits``), checked before any work starts; a
    request over one answers INVALID_ARGUMENT / HTTP 400 naming the limit (docs/reliability.md)."""

    max_pod_sets: int = 256  # per gang (1,024 one-pod sets took 9-12 s of engine time; 256: 0.15-0.3 s)
    max_gang_pods: int = 65536  # pods per gang, all pod sets together
    max_selector_bytes: int = 16384  # a pod set's node selector; an extender pod's labels + nodeSelector + affinity
    max_items_per_request: int = 10000  # pods, nodes, names or gangs in one gRPC request
    engine_queue: int = 16  # engine calls running or waiting; beyond: RESOURCE_EXHAUSTED, /readyz 503
    http_header_timeout_s: float = 10.0  # a connection with no complete request after this long is closed
    http_idle_timeout_s: float = 60.0  # a keep-alive connection idle this long is closed
    http_max_connections: int = 1000  # above this, the longest-idle connections are closed
    pod_cache_max_bytes: int = 64 * 2**20  # the extender's parsed-pod cache, by the pods' JSON size


@dataclass(frozen=True, slots=True)
class ServeConfig:
    cluster: ClusterSource = field(default_factory=lambda: ClusterSource(synthetic=DEFAULT_SYNTHETIC))
    grpc_listen: str = DEFAULT_GRPC_LISTEN
    http_listen: str = DEFAULT_HTTP_LISTEN
    metrics_listen: str | None = None  # HOST:PORT of a separate /metrics listener; None: /metrics on http_listen only
    state_dir: str | None = None  # None: the default for the cluster source (resolve_state_dir)
    ephemeral: bool = False  # no journal: binds are lost on restart (an explicit opt-out)
    placer: str = "auto"
    time_limit_ms: float = 100.0  # CP-SAT budget per placement
    reservation_ttl_s: float = 30.0  # how long a planned gang holds its capacity
    request_timeout_s: float = 10.0  # per-request time limit, gRPC and HTTP
    http_max_body_bytes: int = 64 * 2**20  # 5,000 full Node objects are ~25 MB
    grpc_max_message_bytes: int = 64 * 2**20
    shutdown_grace_s: float = 5.0
    log_level: str = "info"
    tls: TLSConfig = field(default_factory=TLSConfig)
    extender: ExtenderSettings = field(default_factory=ExtenderSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    dra: DraSettings = field(default_factory=DraSettings)

    def replace(self, **changes) -> "ServeConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- validation
def _check_type(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", field=where)
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be an integer, got {value!r}", field=where)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"must be a number, got {value!r}", field=where)
        value = float(value)
    elif kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"must be a non-empty string, got {value!r}", field=where)
    return value


_KINDS = {"bool": bool, "int": int, "float": float, "str": str, "str | None": str}


def _from_mapping(cls, data: Any, where: str):
    """Build a config dataclass from a mapping, checking keys and scalar types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be a mapping, got {type(data).__name__}", field=where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; allowed: {sorted(fields)}", field=where)
    values = {}
    for name, value in data.items():
        f = fields[name]
        w = f"{where}.{name}"
        if f.type == "ClusterSource":
            values[name] = _from_mapping(ClusterSource, value, w)
        elif f.type == "TLSConfig":
            values[name] = _from_mapping(TLSConfig, value, w)
        elif f.type == "ExtenderSettings":
            values[name] = _from_mapping(ExtenderSettings, value, w)
        elif f.type == "LimitsSettings":
            values[name] = _from_mapping(LimitsSettings, value, w)
        elif f.type == "DraSettings":
            values[name] = _from_mapping(DraSettings, value, w)
        elif value is None and "None" in f.type:
            values[name] = None
        elif f.type == "str | tuple":
            values[name] = _levels(value, w)
        else:
            values[name] = _check_type(value, _KINDS[f.type], w)
    return cls(**values)


def _levels(value: Any, where: str) -> str | tuple:
    """``topology_levels``: a string, or a non-empty list checked as ``candidate_levels`` reads it."""
    if isinstance(value, str):
        return _check_type(value, str, where)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"must be a preset, comma-separated label keys or a non-empty list, got {value!r}",
                          field=where)
    from .topology_presets import candidate_levels  # the service's reader of level specs
    items = tuple(dict(v) if isinstance(v, Mapping) else v for v in value)
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and set(item) - {"name", "label"}:
            raise ConfigError(f"unknown key(s) {sorted(set(item) - {'name', 'label'})}; allowed: ['label', 'name']",
                              field=f"{where}[{i}]")
    try:
        candidate_levels(list(items))
    except GangplaceError as e:
        raise ConfigError(e.message, field=f"{where}{(e.field or '').removeprefix('levels')}") from None
    return items


def parse_listen(address: str, where: str) -> tuple[str, int]:
    """'host:port' (IPv6 as '[::1]:50051') -> (host, port); port 0 asks the OS for a free one."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"must be HOST:PORT with a port in 0-65535, got {address!r}", field=where)
    return host.strip("[]"), int(port)


def validate(cfg: ServeConfig) -> ServeConfig:
    """Check cross-field rules and files; returns cfg unchanged or raises ConfigError."""
    src = cfg.cluster
    given = [k for k, v in (("synthetic", src.synthetic), ("file", src.file), ("kubeconfig", src.kubeconfig),
                            ("in_cluster", src.in_cluster)) if v]
    if len(given) != 1:
        raise ConfigError(f"give exactly one cluster source (synthetic, file, kubeconfig, in_cluster), got "
                          f"{given or 'none'}", field="config.cluster")
    if src.synthetic is not None and src.synthetic not in PRESETS:
        raise ConfigError(f"unknown preset {src.synthetic!r}; choose one of {sorted(PRESETS)}",
                          field="config.cluster.synthetic")
    if not MIN_GPUS <= src.gpus <= MAX_GPUS:
        raise ConfigError(f"must be between {MIN_GPUS} and {MAX_GPUS}, got {src.gpus}", field="config.cluster.gpus")
    if not 0.0 <= src.fill <= 1.0:
        raise ConfigError(f"must be between 0 and 1, got {src.fill}", field="config.cluster.fill")
    for name in ("file", "kubeconfig"):
        path = getattr(src, name)
        if path is not None and not Path(os.path.expanduser(path)).is_file():
            raise ConfigError(f"file not found: {path}", field=f"config.cluster.{name}")
    grpc_addr = parse_listen(cfg.grpc_listen, "config.grpc_listen")
    http_addr = parse_listen(cfg.http_listen, "config.http_listen")
    if grpc_addr == http_addr and grpc_addr[1] != 0:
        raise ConfigError(f"gRPC and HTTP cannot share {cfg.http_listen}", field="config.http_listen")
    if cfg.metrics_listen is not None:
        metrics_addr = parse_listen(cfg.metrics_listen, "config.metrics_listen")
        if metrics_addr[1] != 0 and metrics_addr in (grpc_addr, http_addr):
            raise ConfigError(f"the metrics listener cannot share {cfg.metrics_listen} with gRPC or HTTP",
                              field="config.metrics_listen")
    ext = cfg.extender
    for name in ("bind_timeout_s", "gang_timeout_s"):
        if getattr(ext, name) <= 0:
            raise ConfigError(f"must be > 0, got {getattr(ext, name)}", field=f"config.extender.{name}")
    for f in dataclasses.fields(LimitsSettings):
        if getattr(cfg.limits, f.name) <= 0:
            raise ConfigError(f"must be > 0, got {getattr(cfg.limits, f.name)}", field=f"config.limits.{f.name}")
    if cfg.placer not in PLACERS:
        raise ConfigError(f"unknown placer {cfg.placer!r}; choose one of {list(PLACERS)}", field="config.placer")
    for name in ("time_limit_ms", "reservation_ttl_s", "request_timeout_s"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"must be > 0, got {getattr(cfg, name)}", field=f"config.{name}")
    if cfg.shutdown_grace_s < 0:
        raise ConfigError(f"must be >= 0, got {cfg.shutdown_grace_s}", field="config.shutdown_grace_s")
    for name in ("http_max_body_bytes", "grpc_max_message_bytes"):
        if not 1024 <= getattr(cfg, name) <= 2**31 - 1:
            raise ConfigError(f"must be between 1024 and {2**31 - 1}, got {getattr(cfg, name)}",
                              field=f"config.{name}")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"must be one of {list(LOG_LEVELS)}, got {cfg.log_level!r}", field="config.log_level")
    if cfg.ephemeral and cfg.state_dir is not None:
        raise ConfigError(f"ephemeral mode keeps no journal: drop state_dir ({cfg.state_dir}) or ephemeral",
                          field="config.state_dir")
    if cfg.state_dir is not None:
        p = Path(cfg.state_dir).expanduser()
        if p.exists() and not p.is_dir():
            raise ConfigError(f"exists and is not a directory: {p}", field="config.state_dir")
    _validate_tls(cfg.tls)
    _validate_dra(cfg.dra)
    return cfg


def _validate_dra(dra: DraSettings) -> None:
    from gangplace.engine.model.errors import InvalidRequest
    from .dra import parse_topology_attributes
    if not dra.classes:
        raise ConfigError("name at least one DeviceClass", field="config.dra.device_classes")
    try:
        parse_topology_attributes(dra.topology_attributes)
    except InvalidRequest as e:
        raise ConfigError(e.message, field="config.dra.topology_attributes") from None


def _validate_tls(tls: TLSConfig) -> None:
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("cert and key go together: give both or neither", field="config.tls.key"
                          if tls.key is None else "config.tls.cert")
    if not tls.enabled and (tls.client_ca or tls.require_client_cert):
        raise ConfigError("client certificates need TLS: give tls.cert and tls.key too", field="config.tls.cert")
    if tls.require_client_cert and not tls.client_ca:
        raise ConfigError("require_client_cert needs client_ca to verify them against", field="config.tls.client_ca")
    for name in ("cert", "key", "client_ca"):
        path = getattr(tls, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"file not found: {path}", field=f"config.tls.{name}")


def load_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Defaults, then the file at ``path``, then ``overrides`` (flat keys as in ServeConfig, plus
    ``cluster`` / ``tls`` / ``extender`` sub-mappings whose keys replace the file's), validated."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            doc = read_document(path)
        except InvalidFile as e:
            raise ConfigError(e.message, field="--config") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"must be a mapping, got {type(doc).__name__}", field="config")
        data = dict(doc)
    for key, value in (overrides or {}).items():
        if key in ("cluster", "tls", "extender", "limits", "dra") and isinstance(value, Mapping):
            base = data.get(key)
            merged = dict(base) if isinstance(base, Mapping) else {}
            if key == "cluster" and set(value) & set(SOURCE_KEYS):
                # a source given on the command line replaces the file's source
                for k in SOURCE_KEYS:
                    merged.pop(k, None)
            merged.update(value)
            data[key] = merged
        else:
            data[key] = value
    cluster = data.get("cluster")
    if cluster is None:
        data["cluster"] = {}
    if isinstance(data["cluster"], Mapping) and not set(data["cluster"]) & set(SOURCE_KEYS):
        data["cluster"] = {**data["cluster"], "synthetic": DEFAULT_SYNTHETIC}  # no source given: the default
    if isinstance(data.get("state_dir"), str) and data["state_dir"].strip().lower() == STATE_DIR_NONE:
        data["state_dir"] = None  # "--state-dir none": the explicit opt-out, as --ephemeral
        data["ephemeral"] = True
    return validate(_from_mapping(ServeConfig, data, "config"))


# ---------------------------------------------------------------------- where binds are journaled
STATE_DIR_NONE = "none"  # --state-dir none: no journal (same as --ephemeral)


def state_home() -> Path:
    """``$XDG_STATE_HOME`` (the XDG base directory for state that survives restarts but is not
    worth backing up), else ``~/.local/state``; a relative value is ignored, as the spec says."""
    env = os.environ.get("XDG_STATE_HOME", "")
    return Path(env) if os.path.isabs(env) else Path.home() / ".local" / "state"


def default_state_dir(src: ClusterSource) -> Path:
    """The journal directory of a cluster file or synthetic spec when no ``state_dir`` is given:
    ``<state_home>/gangplace/<name>``.

    Why there and not beside the cluster file: the file may sit in a read-only place (a ConfigMap
    mount, /etc, a shared checkout), and a journal next to it would be copied, committed or shared
    along with it. Why this name: the same cluster must find the same journal on every restart,
    whatever the working directory, and two clusters must never share one. A file is named by its
    stem plus a hash of its absolute path; a synthetic cluster by its full spec (generation is
    deterministic, so the same spec gives the same nodes)."""
    if src.kind == "file":
        path = Path(src.file).expanduser().resolve()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem) or "cluster"
        name = f"file-{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    else:
        name = f"synthetic-{src.synthetic}-{src.gpus}gpus-fill{src.fill:g}-seed{src.seed}"
    return state_home() / "gangplace" / name


@dataclass(frozen=True, slots=True)
class StateLocation:
    """Where this server journals its binds, and why there."""

    path: Path | None  # None: no journal
    origin: str  # "state_dir" (given), "default", "ephemeral", "kubernetes"

    @property
    def durable(self) -> bool:
        """Do acknowledged binds survive a restart? (Kubernetes: the cluster is the record.)"""
        return self.origin != "ephemeral"

    def describe(self) -> str:
        """One line for the banner and the log."""
        if self.origin == "kubernetes":
            return "Kubernetes is the record: a restart rebuilds bound pods from the cluster"
        if self.origin == "ephemeral":
            return ("EPHEMERAL: binds are kept in memory only and will NOT survive a restart "
                    "(drop --ephemeral to journal them)")
        how = "default for this cluster" if self.origin == "default" else "--state-dir"
        return f"{self.path} (bind journal, {how}; --ephemeral to run without)"


def resolve_state_dir(cfg: ServeConfig) -> StateLocation:
    """Where ``cfg``'s server journals binds: the given ``state_dir``, else the default for its
    file or synthetic cluster (durable by default), nowhere when ``ephemeral``; Kubernetes mode
    keeps no journal (a restart rebuilds the state from the cluster)."""
    if cfg.cluster.kind == "kubernetes":
        return StateLocation(None, "kubernetes")
    if cfg.ephemeral:
        return StateLocation(None, "ephemeral")
    if cfg.state_dir is not None:
        return StateLocation(Path(cfg.state_dir).expanduser(), "state_dir")
    return StateLocation(default_state_dir(cfg.cluster), "default")
