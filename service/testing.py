"""Run a gangplace Service in a background thread (its own asyncio loop), for tests, benchmarks
and notebooks that want a real server on 127.0.0.1 without blocking the caller.

    with running_service(config, state) as svc:
        GangplaceClient(f"127.0.0.1:{svc.grpc_port}").ping()
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import subprocess
import threading
from typing import Iterator

from .app import Service
from .config import ServeConfig


class ServiceThread:
    def __init__(self, config: ServeConfig, state=None, **kwargs):
        self.service = Service(config, state, **kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gangplace-service", daemon=True)

    def start(self, timeout_s: float = 60.0) -> Service:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(timeout_s)
        return self.service

    def call(self, coro, timeout_s: float = 60.0):
        """Run a coroutine on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self, grace_s: float = 1.0, timeout_s: float = 60.0) -> None:
        try:
            self.call(self.service.stop(grace_s), timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
            self.loop.close()


@contextlib.contextmanager
def running_service(config: ServeConfig | None = None, state=None, **kwargs) -> Iterator[Service]:
    """A started Service on the config's addresses (default: 127.0.0.1 port 0 for both)."""
    cfg = config or ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0")
    t = ServiceThread(cfg, state, **kwargs)
    svc = t.start()
    try:
        yield svc
    finally:
        t.stop()


def http_get(port: int, path: str, host: str = "127.0.0.1", timeout_s: float = 30.0) -> tuple[int, str]:
    """(status, body text) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)
