"""``gangplace serve``: the gRPC API and the HTTP extender/probes in one process (service/app.py).

Flags override the YAML ``--config`` file, which overrides the defaults (service/config.py);
everything is validated before anything listens (exit 2 with the field named).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .config import DEFAULT_GRPC_LISTEN, DEFAULT_HTTP_LISTEN, LOG_LEVELS, PLACERS, ServeConfig, load_config


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the gRPC API and the kube-scheduler extender",
                       description="Serve gangplace.v1 over gRPC and the extender, /healthz, /readyz and /metrics "
                                   "over HTTP, in one process. Flags override --config.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see docs/service.md)")
    src = p.add_argument_group("cluster source (one of)")
    src.add_argument("--synthetic", metavar="PRESET", help="synthetic cluster preset (dgx-h100, gb200-nvl72, ...)")
    src.add_argument("--gpus", type=int, help="synthetic: about this many GPUs (default 2048)")
    src.add_argument("--fill", type=float, help="synthetic: background load 0-1 (default 0.6)")
    src.add_argument("--seed", type=int, help="synthetic: seed (default 1)")
    src.add_argument("--cluster", metavar="FILE", help="cluster file (.yaml, .json, .parquet, .arrow)")
    src.add_argument("--kubeconfig", metavar="FILE", help="Kubernetes via this kubeconfig")
    src.add_argument("--in-cluster", action="store_true", default=None, help="Kubernetes via the service account")
    net = p.add_argument_group("listening")
    net.add_argument("--grpc-listen", metavar="HOST:PORT", help=f"gRPC address (default {DEFAULT_GRPC_LISTEN})")
    net.add_argument("--http-listen", metavar="HOST:PORT", help=f"HTTP address (default {DEFAULT_HTTP_LISTEN})")
    net.add_argument("--metrics-listen", metavar="HOST:PORT",
                     help="also serve /metrics (and /healthz) here, plain HTTP, e.g. 0.0.0.0:9090 for Prometheus "
                          "(default: /metrics on the HTTP address only)")
    net.add_argument("--tls-cert", metavar="PEM", help="server certificate: TLS on both ports")
    net.add_argument("--tls-key", metavar="PEM", help="server private key")
    net.add_argument("--tls-client-ca", metavar="PEM", help="verify client certificates against this CA")
    net.add_argument("--tls-require-client-cert", action="store_true", default=None,
                     help="mTLS: refuse clients without a valid certificate")
    beh = p.add_argument_group("behaviour")
    beh.add_argument("--state-dir", metavar="DIR",
                     help="file/synthetic mode: journal binds here so a restart never double-books (default: "
                          "$XDG_STATE_HOME/gangplace/<cluster>, ~/.local/state/... without it; 'none' = --ephemeral)")
    beh.add_argument("--ephemeral", action="store_true", default=None,
                     help="keep binds in memory only: a restart forgets them (an explicit opt-out of the journal)")
    beh.add_argument("--placer", choices=PLACERS, help="default placer (auto)")
    beh.add_argument("--time-limit-ms", type=float, help="CP-SAT budget per placement (100)")
    beh.add_argument("--reservation-ttl-s", type=float, help="reservation lifetime without refresh (30)")
    beh.add_argument("--request-timeout-s", type=float, help="per-request time limit (10)")
    beh.add_argument("--log-level", choices=LOG_LEVELS, help="log level (info)")
    ext = p.add_argument_group("extender (config key `extender`)")
    ext.add_argument("--bind-timeout-s", type=float,
                     help="how long a gang's binds wait for the rest (25; below the scheduler's httpTimeout)")
    ext.add_argument("--gang-timeout-s", type=float, help="release an incomplete gang's reservation after this (300)")
    ext.add_argument("--report-all-failed", action="store_true", default=None,
                     help="a placed member: also list every other node in FailedNodes")
    ext.add_argument("--reservation-blocked-error", action="store_true", default=None,
                     help="kept out only by other gangs' reservations: answer Error (retried soon), not FailedNodes")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    cluster = {k: v for k, v in (("synthetic", args.synthetic), ("gpus", args.gpus), ("fill", args.fill),
                                 ("seed", args.seed), ("file", args.cluster), ("kubeconfig", args.kubeconfig),
                                 ("in_cluster", args.in_cluster)) if v is not None}
    tls = {k: v for k, v in (("cert", args.tls_cert), ("key", args.tls_key), ("client_ca", args.tls_client_ca),
                             ("require_client_cert", args.tls_require_client_cert)) if v is not None}
    extender = {k: v for k, v in (("bind_timeout_s", args.bind_timeout_s), ("gang_timeout_s", args.gang_timeout_s),
                                  ("report_all_failed", args.report_all_failed),
                                  ("reservation_blocked_error", args.reservation_blocked_error)) if v is not None}
    overrides = {k: v for k, v in (("grpc_listen", args.grpc_listen), ("http_listen", args.http_listen),
                                   ("metrics_listen", args.metrics_listen),
                                   ("state_dir", args.state_dir), ("ephemeral", args.ephemeral), ("placer", args.placer),
                                   ("time_limit_ms", args.time_limit_ms), ("reservation_ttl_s", args.reservation_ttl_s),
                                   ("request_timeout_s", args.request_timeout_s), ("log_level", args.log_level))
                 if v is not None}
    if cluster:
        overrides["cluster"] = cluster
    if tls:
        overrides["tls"] = tls
    if extender:
        overrides["extender"] = extender
    return load_config(args.config, overrides)


def cli_command() -> str:
    """How to call this same ``gangplace`` from the current directory: its name when PATH finds
    this very program, else its path (``.venv/bin/gangplace`` after ``make run``)."""
    me = Path(sys.argv[0])
    if me.name != "gangplace":  # not the console script (an embedding program, pytest): the name
        return "gangplace"
    found = shutil.which("gangplace")
    if found and Path(found).resolve() == me.resolve():
        return "gangplace"
    try:
        return str(me.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(me.resolve())


def usage_banner(service) -> str:
    """How to call a running service: printed by ``gangplace serve`` once both ports listen."""
    cfg = service.config
    tls = cfg.tls.enabled
    scheme = "https" if tls else "http"
    http = f"{scheme}://{service.http_address}"
    curl = "curl -s" + (" --cacert CA.pem" if tls else "") + (" --cert CLIENT.pem --key CLIENT.key"
                                                               if cfg.tls.require_client_cert else "")
    gp_opts = f"--target {service.grpc_address}" + (" --ca CA.pem" if tls else "") + (
        " --cert CLIENT.pem --key CLIENT.key" if cfg.tls.require_client_cert else "")
    grpcurl = "grpcurl " + ("-cacert CA.pem" if tls else "-plaintext") + f" {service.grpc_address}"
    stats = service.state.stats()
    src = cfg.cluster
    what = {"synthetic": f"synthetic {src.synthetic}", "file": src.file, "kubernetes": "Kubernetes"}[src.kind]
    routes = [r for r in getattr(service, "extender_routes", [])]
    gp = cli_command()
    gang = "examples/gang.yaml" if Path("examples/gang.yaml").is_file() else "GANG.yaml"
    lines = [
        f"gangplace serving {what}: {stats.get('nodes')} nodes, {stats.get('gpus')} GPUs "
        f"({stats.get('free_gpus')} free){', TLS' if tls else ''}{' + client certificates' if cfg.tls.require_client_cert else ''}",
        f"  gRPC  {service.grpc_address}   gangplace.v1.Gangplace + grpc.health.v1 + reflection",
        f"  HTTP  {http}   /healthz /readyz /metrics /topology" + (f" + extender {' '.join(routes)}" if routes else ""),
        *([f"  metrics http://{service.metrics_address}/metrics   (Prometheus; /healthz too)"]
          if getattr(service, "metrics_port", None) else []),
        f"  state {service.location.describe()}",
        "Try:",
        f"  {curl} {http}/readyz",
        f"  {curl} {http}/metrics | grep '^gangplace_'",
        f"  {gp} grpc place {gp_opts} --gang {gang}",
        f"  {gp} grpc place {gp_opts} --gang {gang} --reserve",
        f"  {gp} grpc snapshot {gp_opts}",
        f"  {gp} grpc release {gp_opts} train-7",
        f"  {grpcurl} list                      # grpcurl is a separate tool (github.com/fullstorydev/grpcurl)",
        f"  {grpcurl} grpc.health.v1.Health/Check",
    ]
    if "/filter" in routes and Path("examples/extender-filter.json").is_file():
        lines.append(f"  {curl} -X POST {http}/filter -H 'Content-Type: application/json' "
                     f"-d @examples/extender-filter.json   # first member of a 2-pod gang")
    lines.append("Stop with Ctrl-C or SIGTERM (graceful: in-flight requests finish).")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .app import run as run_service  # deferred: grpc and aiohttp load only for `serve`, not every CLI command
    from .logs import setup_logging
    config = config_from_args(args)
    setup_logging(config.log_level)

    def started(service) -> None:
        print(usage_banner(service), flush=True)
    try:
        run_service(config, on_started=started)
    except OSError as e:  # the port is taken, etc.
        print(f"gangplace: error: {e}", file=sys.stderr)
        return 1
    return 0
