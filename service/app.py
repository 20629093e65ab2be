"""``gangplace serve``: one process, one asyncio loop running the grpc.aio server and an aiohttp
app side by side.

HTTP routes: ``/healthz`` (the loop answers), ``/readyz`` (state loaded and, in Kubernetes mode,
the first full sync done), ``/metrics`` (Prometheus text), and the kube-scheduler extender
verbs from service/extender.py. Both ports take optional TLS/mTLS
(config.tls). Limits: the HTTP body size (``http_max_body_bytes``: 413 above it), the gRPC
message size, and a per-request time limit (``request_timeout_s``) on both. An extender verb
over its limit answers HTTP 200 with the verb's error shape (the extender applies the deadline
this middleware puts on the request; kube-scheduler retries non-200 answers as failures); the
other routes, and a request body that never finishes arriving, get HTTP 504.

Lifecycle: ``Service(config).start()`` locks the state dir (service/state_lock.py: one server
per directory), loads the cluster (synthetic preset, cluster file, or Kubernetes) with its bind
journal replayed (file and synthetic mode are durable by default: config.resolve_state_dir;
``ephemeral`` opts out, and then the banner, the log, ``/readyz``'s body and the
``gangplace_binds_durable`` metric say so), binds both ports and starts serving; ``stop()`` marks health NOT_SERVING and
``/readyz`` false, stops accepting, lets in-flight requests finish within ``shutdown_grace_s``,
then closes the state (and its journal) and unlocks the state dir. ``run(config)`` does both around SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from aiohttp import web

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.synthetic import generate

from .config import ServeConfig, StateLocation, parse_listen, resolve_state_dir
from .extender import Extender, ExtenderConfig
from .extender_wire import DEADLINE_KEY, Deadline, add_routes
from .grpc_server import GangplaceServicer, create_server, set_serving
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .state_lock import StateDirLock
from .tls import server_ssl_context
from .topology_presets import LevelMap, describe

log = logging.getLogger("gangplace.serve")

EXPIRE_INTERVAL_S = 1.0  # how often expired reservations are dropped
EXTENDER_BACKSTOP_S = 1.0  # past an extender verb's own time limit: HTTP 504 if it still has not answered


def build_state(config: ServeConfig, journal_dir: Path | None):
    """The live ClusterState from the configured source, journaling binds to ``journal_dir``
    (file and synthetic mode; None: ephemeral). Kubernetes mode: None (the sync builds it)."""
    src = config.cluster
    if src.kind == "synthetic":
        cluster = generate(src.synthetic, gpus=src.gpus, fill=src.fill, seed=src.seed)
    elif src.kind == "file":
        cluster = Cluster.load(src.file)
    else:
        return None  # Kubernetes: built by the sync (see _start_kubernetes)
    return ClusterState(cluster, journal_dir=journal_dir, reservation_ttl_s=config.reservation_ttl_s)


def warm_up(config: ServeConfig) -> None:
    """Import the exact placer now (ortools costs ~0.6 s), not inside the first request."""
    if config.placer == "heuristic":
        return
    try:  # deferred on purpose: this is the warm-up
        import gangplace.engine.exact.auto  # noqa: F401
        from ortools.sat.python import cp_model  # noqa: F401
    except ImportError:  # a build without the exact placer serves heuristic answers
        pass


class Service:
    """The whole server. Attributes after ``start()``: ``state``, ``grpc_port``, ``http_port``."""

    def __init__(self, config: ServeConfig, state=None, *, metrics: Metrics | None = None):
        self.config = config
        self.state = state
        self.metrics = metrics or Metrics()
        self.extender = None
        self.sync = None  # (SyncState, KubeWatcher) when the cluster source is Kubernetes
        self._k8s_module = None
        self.grpc_server = None
        self.grpc_port = 0
        self.http_port = 0
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port: int | None = None
        self.extender_routes: list[str] = []  # POST paths the extender module added
        self._route_limits: dict[str, float] = {}  # per-route time limits overriding request_timeout_s
        self._extender_route_set: frozenset[str] = frozenset()
        self._tasks: list[asyncio.Task] = []
        self._ready = False
        self._stopping = False
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gangplace-engine")
        self.location = StateLocation(None, "ephemeral")  # where binds are journaled; set by start()
        self.state_lock: StateDirLock | None = None
        self.servicer: GangplaceServicer | None = None
        self._conn_seen: dict = {}  # HTTP connection (aiohttp RequestHandler) -> [last activity, busy, served]

    # ------------------------------------------------------------------ readiness
    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` answers 503 (None: ready)."""
        if self._stopping:
            return "shutting down"
        if not self._ready or self.state is None:
            return "starting"
        problem = getattr(self.state, "journal_problem", lambda: None)()
        if problem is not None:
            return f"{problem} (binds are not acknowledged meanwhile; retried every {EXPIRE_INTERVAL_S:g} s)"
        saturated = self.servicer.saturated() if self.servicer is not None else None
        if saturated is not None:
            return saturated
        ext_ready = getattr(self.extender, "ready", True)
        if callable(ext_ready):
            ext_ready = ext_ready()
        return None if ext_ready else "waiting for the cluster (the first node and pod lists)"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        cfg = self.config
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self.state is None:
            self.location = resolve_state_dir(cfg)
            if self.location.path is not None:  # before the journal is read: one server per directory
                self.state_lock = await loop.run_in_executor(self.executor, StateDirLock.acquire, self.location.path)
            self.state = await loop.run_in_executor(self.executor, build_state, cfg, self.location.path)
        else:  # a state built by the caller (tests, embedding): it says itself whether it journals
            journal = getattr(self.state, "journal_path", None)
            self.location = StateLocation(journal.parent, "state_dir") if journal else StateLocation(None, "ephemeral")
        if not self.location.durable:
            log.warning("ephemeral mode: binds are kept in memory only and will not survive a restart")
        if self.state is None:
            await self._start_kubernetes()
        await asyncio.get_running_loop().run_in_executor(self.executor, warm_up, cfg)
        self.metrics.on_scrape(self._refresh_gauges)
        self.extender = self._make_extender()
        self.extender.max_selector_bytes = cfg.limits.max_selector_bytes
        self.extender.pods.max_bytes = cfg.limits.pod_cache_max_bytes
        self.metrics.watch_events(self.extender.counters)
        if self._k8s_module is not None:
            src = cfg.cluster
            self.sync = await asyncio.get_running_loop().run_in_executor(
                self.executor, functools.partial(
                    self._k8s_module.start_kube_sync, self.state, self.extender, kubeconfig=src.kubeconfig,
                    in_cluster=src.in_cluster, levels=_levels_spec(src.topology_levels), gpu_resource=src.gpu_resource,
                    dra=_dra_index(cfg.dra), loop=asyncio.get_running_loop()))
        servicer = self.servicer = GangplaceServicer(self.state, config=cfg, metrics=self.metrics,
                                                     extender=self.extender, executor=self.executor)
        self.grpc_server, self.grpc_port = create_server(self.state, cfg.grpc_listen, cfg.tls, config=cfg,
                                                         servicer=servicer)
        await self.grpc_server.start()
        await set_serving(self.grpc_server, True)
        await self._start_http()
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="gangplace-expire"))
        self._tasks.append(asyncio.create_task(self._connection_sweeper(), name="gangplace-connections"))
        self._ready = True
        log.info("serving", extra={"grpc": self.grpc_address, "http": self.http_address,
                                   "tls": cfg.tls.enabled, "mtls": cfg.tls.require_client_cert,
                                   "cluster": cfg.cluster.kind, "nodes": self._node_count(),
                                   "state": self.location.describe(), "binds_durable": self.location.durable,
                                   "startup_ms": round((time.perf_counter() - t0) * 1e3, 1)})

    async def stop(self, grace_s: float | None = None) -> None:
        if self._stopping:
            return
        self._stopping = True
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        log.info("shutting down", extra={"grace_s": grace})
        if self.grpc_server is not None:
            await set_serving(self.grpc_server, False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sync is not None:
            _, watcher = self.sync
            watcher.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace)  # refuse new RPCs, finish in-flight ones
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.sync is not None and hasattr(self.sync[1], "aclose"):
            await self.sync[1].aclose()  # the Kubernetes client's connections, once no request needs them
        self.executor.shutdown(wait=True)
        if self.state is not None and hasattr(self.state, "close"):
            self.state.close()
        if self.state_lock is not None:
            self.state_lock.release()
        log.info("stopped")

    @property
    def grpc_address(self) -> str:
        host, _ = parse_listen(self.config.grpc_listen, "grpc_listen")
        return f"{_bracket(host)}:{self.grpc_port}"

    @property
    def metrics_address(self) -> str | None:
        if self.metrics_port is None or self.config.metrics_listen is None:
            return None
        host, _ = parse_listen(self.config.metrics_listen, "metrics_listen")
        return f"{_bracket(host)}:{self.metrics_port}"

    @property
    def http_address(self) -> str:
        host, _ = parse_listen(self.config.http_listen, "http_listen")
        return f"{_bracket(host)}:{self.http_port}"

    # ------------------------------------------------------------------ parts
    def _make_extender(self) -> Extender:
        cfg = self.config
        ext = cfg.extender
        return Extender(self.state, ExtenderConfig(
            gpu_resource=cfg.cluster.gpu_resource, placer=cfg.placer, time_limit_ms=cfg.time_limit_ms,
            gang_timeout_s=ext.gang_timeout_s, evict_partial_gangs=ext.evict_partial_gangs,
            reservation_blocked_error=ext.reservation_blocked_error, bind_timeout_s=ext.bind_timeout_s,
            report_all_failed=ext.report_all_failed, single_pod_one_node=ext.single_pod_one_node))

    async def _start_kubernetes(self) -> None:
        # deferred: the sync imports the Kubernetes client (heavy), which file and synthetic mode never need
        k8s_sync = importlib.import_module("gangplace.service.k8s_sync")
        # empty until the first list: the sync replaces the nodes (and resolves the levels)
        self.state = ClusterState(Cluster((), []), journal_dir=None,
                                  reservation_ttl_s=self.config.reservation_ttl_s)
        self._k8s_module = k8s_sync

    async def _start_http(self) -> None:
        cfg = self.config
        app = web.Application(client_max_size=cfg.http_max_body_bytes, middlewares=[self._middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/topology", self._topology)
        if self.extender is not None:
            add_routes(app, self.extender)
            # a gang's binds wait for each other (up to the extender's bind_timeout_s, kept below the
            # scheduler's httpTimeout): the generic request limit must not cut that wait short
            bind_wait = getattr(getattr(self.extender, "config", None), "bind_timeout_s", 0.0)
            self._route_limits["/bind"] = max(cfg.request_timeout_s, bind_wait + 5.0)
        self.extender_routes = sorted({r.resource.canonical for r in app.router.routes()
                                       if r.method == "POST" and r.resource is not None})
        self._extender_route_set = frozenset(self.extender_routes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=cfg.shutdown_grace_s,
                                     keepalive_timeout=cfg.limits.http_idle_timeout_s)
        await self._runner.setup()
        ssl_context = None
        if cfg.tls.enabled:
            ssl_context = server_ssl_context(cfg.tls)
        host, port = parse_listen(cfg.http_listen, "config.http_listen")
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, reuse_port=False)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # the bound port (port 0 asks the OS)
        if cfg.metrics_listen is not None:
            await self._start_metrics_listener(cfg.metrics_listen)

    async def _start_metrics_listener(self, address: str) -> None:
        """/metrics (and /healthz) on an address of its own, plain HTTP: Prometheus scrapes it from
        the pod network while the extender and gRPC ports stay on loopback."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._metrics_runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._metrics_runner.setup()
        host, port = parse_listen(address, "config.metrics_listen")
        site = web.TCPSite(self._metrics_runner, host, port, reuse_port=False)
        await site.start()
        self.metrics_port = site._server.sockets[0].getsockname()[1]

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        t0 = time.perf_counter()
        self._mark(request, True)
        route = request.match_info.route.resource
        verb = route.canonical if route is not None else "unmatched"
        limit = self._route_limits.get(verb, self.config.request_timeout_s)
        backstop, deadline = limit, None
        if verb in self._extender_route_set:
            # the extender answers its own time limit with HTTP 200 and the verb's error shape
            # (the scheduler retries any non-200 as a failure); this limit is only the backstop
            # for a body that never arrives (HTTP 504 below)
            deadline = request[DEADLINE_KEY] = Deadline(asyncio.get_running_loop().time() + limit, limit)
            backstop = limit + EXTENDER_BACKSTOP_S
        try:
            async with asyncio.timeout(backstop):  # no task per request, unlike wait_for on 3.11
                response = await handler(request)
            if deadline is not None and deadline.hit:
                self.metrics.rejections.labels("deadline_exceeded").inc()
            return response
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejections.labels("too_large").inc()
            raise
        except asyncio.TimeoutError:
            self.metrics.rejections.labels("deadline_exceeded").inc()
            log.warning("request timed out", extra={"verb": verb, "limit_s": limit})
            return web.json_response({"Error": f"{verb} took longer than {limit:g} s"}, status=504)
        finally:
            self._mark(request, False)
            self.metrics.request_seconds.labels("http", verb).observe(time.perf_counter() - t0)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self.not_ready_reason()
        if reason is None:
            if not self.location.durable:
                return web.Response(text="ready (ephemeral: binds will not survive a restart)\n")
            return web.Response(text="ready\n")
        return web.Response(text=f"not ready: {reason}\n", status=503)

    async def _topology(self, request: web.Request) -> web.Response:
        """The topology levels and domains in use, and the nodes lacking a level's label (JSON)."""
        if self.sync is not None:
            report = self.sync[0].topology()
        else:  # a cluster file or synthetic cluster: levels by name, no node labels behind them
            levels = tuple(self.state.cluster.levels)
            report = describe(LevelMap(levels, levels), {n.name: n.topology for n in self.state.cluster.nodes},
                              self.config.cluster.kind)
        return web.json_response(report)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.expose()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _refresh_gauges(self, m: Metrics) -> None:
        if self.state is None:
            return
        s = self.state.stats()
        m.state_version.set(s.get("version", 0))
        m.nodes.set(s.get("nodes", 0))
        m.gpus.set(s.get("gpus", 0))
        m.free_gpus.set(s.get("free_gpus", 0))
        m.active_reservations.set(s.get("reservations", 0))
        m.binds_durable.set(1 if self.location.durable else 0)
        if self.extender is not None:
            m.gangs_waiting.set(self.extender.planner.gangs_at_barrier())
            m.pod_cache_bytes.set(self.extender.pods.bytes)

    def _node_count(self) -> int:
        try:
            return int(self.state.stats().get("nodes", 0))
        except Exception:
            return 0

    async def _connection_sweeper(self) -> None:
        """Close HTTP connections that hold a descriptor without sending a request: no complete
        request ``limits.http_header_timeout_s`` after connecting (a stalled or slowloris
        client: aiohttp itself waits for headers forever), idle past
        ``limits.http_idle_timeout_s`` between requests, or the longest idle beyond
        ``limits.http_max_connections``."""
        lim = self.config.limits
        while True:
            await asyncio.sleep(min(1.0, lim.http_header_timeout_s / 4))
            server = getattr(self._runner, "server", None)
            if server is None:
                continue
            now = asyncio.get_running_loop().time()
            conns = server.connections
            live = set(conns)
            for h in [h for h in self._conn_seen if h not in live]:
                del self._conn_seen[h]
            idle = []
            for h in conns:
                seen = self._conn_seen.setdefault(h, [now, False, False])
                last, busy, served = seen
                if busy:
                    continue
                limit = lim.http_idle_timeout_s if served else lim.http_header_timeout_s
                if now - last > limit:
                    self._close_connection(h, "idle" if served else "no complete request")
                else:
                    idle.append((last, h))
            excess = len(conns) - lim.http_max_connections
            for _, h in sorted(idle, key=lambda x: x[0])[:max(0, excess)]:
                self._close_connection(h, "over limits.http_max_connections")

    def _close_connection(self, handler, why: str) -> None:
        self.metrics.rejections.labels("connection_closed").inc()
        log.debug("closing an HTTP connection", extra={"why": why})
        transport = getattr(handler, "transport", None)
        if transport is not None:
            transport.close()
        self._conn_seen.pop(handler, None)

    def _mark(self, request: web.Request, busy: bool) -> None:
        handler = request.protocol
        seen = self._conn_seen.setdefault(handler, [0.0, False, False])
        seen[0], seen[1], seen[2] = asyncio.get_running_loop().time(), busy, True

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_INTERVAL_S)
            if getattr(self.state, "journal_problem", lambda: None)() is not None:
                try:  # rewrite the journal from memory once the cause (full disk, read-only, fds) is gone
                    if await asyncio.get_running_loop().run_in_executor(None, self.state.recover_journal):
                        log.warning("journal recovered: acknowledging binds again")
                except Exception:
                    log.exception("journal recovery failed")
            try:
                # the extender's tick also releases gangs that never completed
                gone = self.extender.tick() if self.extender is not None else self.state.expire()
            except Exception:
                log.exception("expiring reservations failed")
                continue
            if gone:
                self.metrics.reservations.labels("expired").inc(len(gone))


def _dra_index(dra):
    """The DRA bookkeeping (service/dra.py) the ``dra`` config describes."""
    from .dra import DraIndex, parse_topology_attributes
    return DraIndex(driver=dra.driver, device_classes=dra.classes, product_attribute=dra.product_attribute,
                    topology_attributes=parse_topology_attributes(dra.topology_attributes))


def _levels_spec(text: str | tuple) -> str | list:
    """'auto', a preset name, or comma-separated label keys / presets (top first); a list as given."""
    if not isinstance(text, str):
        return list(text)
    return [x.strip() for x in text.split(",") if x.strip()] if "," in text else text


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(config: ServeConfig, *, on_started: Callable[[Service], None] | None = None,
                stop_event: asyncio.Event | None = None) -> None:
    """Start, wait for SIGTERM/SIGINT (or ``stop_event``), stop gracefully."""
    service = Service(config)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await service.start()
        # after start: the engine warm-up imports native libraries, which must not own the signals
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        if on_started is not None:
            on_started(service)
        await stop.wait()
    finally:
        await service.stop()


def run(config: ServeConfig, *, on_started: Callable[[Service], None] | None = None) -> None:
    asyncio.run(serve(config, on_started=on_started))
