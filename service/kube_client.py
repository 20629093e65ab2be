"""A small asyncio client for the Kubernetes API: one pooled aiohttp session, JSON in and out.

What gangplace sends and reads -- Bindings, Evictions, Events, paged lists and watch streams --
is plain JSON on a handful of paths, so this is an aiohttp ``ClientSession`` (keep-alive
connections, at most ``pool`` of them) plus authentication; no generated models. Measured on the
bind path (``benchmarks/bench_kube_client.py``, docs/benchmarks.md): about 3x the official client
in a thread pool, a little ahead of ``kubernetes-asyncio`` (within noise), while ``lightkube``
fails to decode the Binding reply.

Credentials come from the official client's kubeconfig / in-cluster loader (``load_config``): it
resolves every kubeconfig form (token, token file, client certificate, exec plugin) into a
``Configuration`` once; after that the official client is never called. A refreshable token (the
in-cluster service-account token, an exec plugin's) is re-read through the loader's hook at most
once a minute, never per request.

    kc = KubeClient.from_kubeconfig("~/.kube/config")     # or KubeClient.in_cluster()
    err = await kc.bind("ns", "pod-0", uid, "node-3")     # None or "HTTP 409 Conflict: ..."
    async for page in kc.list_pages("/api/v1/nodes"): ...
    async for event in kc.watch("/api/v1/pods", resource_version="123"): ...
    await kc.close()
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, AsyncIterator, Mapping

import aiohttp
import orjson

log = logging.getLogger("gangplace.kube")

TOKEN_REFRESH_S = 60.0


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str = ""):
        super().__init__(f"HTTP {status} {reason}".strip() + (f": {message}" if message else ""))
        self.status = status
        self.reason = reason
        self.message = message


def load_config(kubeconfig: str | None = None, *, in_cluster: bool = False):
    """The official client's ``Configuration`` for a kubeconfig file or the in-cluster account."""
    from kubernetes import client, config  # only to read credentials, once
    cfg = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return cfg


class KubeClient:
    """Pooled asyncio access to one API server. Create it inside the event loop that uses it."""

    def __init__(self, host: str, *, ssl_context: ssl.SSLContext | bool | None = None,
                 token: str | None = None, token_source=None, pool: int = 64,
                 timeout_s: float = 30.0):
        self.host = host.rstrip("/")
        self._ssl = ssl_context
        self._token = token
        self._token_source = token_source  # a Configuration with refresh_api_key_hook, or None
        self._token_at = time.monotonic()
        self.pool = pool
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_configuration(cls, cfg, **kw) -> "KubeClient":
        ctx: ssl.SSLContext | bool | None = None
        if cfg.host.startswith("https"):
            if not cfg.verify_ssl:
                ctx = False
            else:
                ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
                if cfg.cert_file:
                    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        token = _bearer(cfg)
        hook = cfg if getattr(cfg, "refresh_api_key_hook", None) is not None else None
        return cls(cfg.host, ssl_context=ctx, token=token, token_source=hook, **kw)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **kw) -> "KubeClient":
        return cls.from_configuration(load_config(path), **kw)

    @classmethod
    def in_cluster(cls, **kw) -> "KubeClient":
        return cls.from_configuration(load_config(in_cluster=True), **kw)

    # ------------------------------------------------------------------ plumbing
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool, ssl=self._ssl, keepalive_timeout=60),
                json_serialize=lambda o: orjson.dumps(o).decode(), timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None = "application/json") -> dict[str, str]:
        h = {"Accept": "application/json"}
        if content_type:
            h["Content-Type"] = content_type
        if self._token_source is not None and time.monotonic() - self._token_at > TOKEN_REFRESH_S:
            self._token_at = time.monotonic()
            try:
                self._token_source.refresh_api_key_hook(self._token_source)
                self._token = _bearer(self._token_source) or self._token
            except Exception as e:  # keep the old token; the API server says if it expired
                log.warning("refreshing the API token failed: %s", e)
        if self._token:
            h["Authorization"] = self._token
        return h

    async def request(self, method: str, path: str, body: Any = None, *, params: Mapping | None = None,
                      content_type: str = "application/json") -> Any:
        """One call; the decoded JSON answer (None if empty). Raises ApiError on a non-2xx answer."""
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        async with self.session().request(method, self.host + path, data=data, params=params,
                                          headers=self._headers(content_type if data is not None else None)) as r:
            raw = await r.read()
            if r.status >= 300:
                raise _api_error(r.status, r.reason or "", raw)
            return orjson.loads(raw) if raw else None

    # ------------------------------------------------------------------ what gangplace does
    async def bind(self, namespace: str, name: str, uid: str, node: str) -> str | None:
        """POST the pod's Binding; None, or the error."""
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body)
        except ApiError as e:
            return str(e)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}".rstrip(": ")
        return None

    async def evict(self, namespace: str, name: str) -> str | None:
        """POST an Eviction (PodDisruptionBudgets apply); None if done or the pod is already gone."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)
        except ApiError as e:
            return None if e.status == 404 else str(e)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}".rstrip(": ")
        return None

    async def list_pages(self, path: str, *, limit: int = 500,
                         timeout_s: float = 120.0) -> AsyncIterator[tuple[list, str | None]]:
        """(items, resourceVersion) per page (limit/continue). An expired continue token: ApiError 410."""
        cont = None
        while True:
            params = {"limit": str(limit)}
            if cont:
                params["continue"] = cont
            async with self.session().get(self.host + path, params=params, headers=self._headers(None),
                                          timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                        sock_read=timeout_s)) as r:
                raw = await r.read()
                if r.status >= 300:
                    raise _api_error(r.status, r.reason or "", raw)
            doc = orjson.loads(raw)
            meta = doc.get("metadata") or {}
            yield doc.get("items") or [], meta.get("resourceVersion")
            cont = meta.get("continue")
            if not cont:
                return

    async def watch(self, path: str, *, resource_version: str | None, timeout_s: int = 300,
                    read_slack_s: float = 30.0) -> AsyncIterator[dict]:
        """Watch events as dicts in the API shape (ERROR events included), until the server ends
        the watch. A socket read that waits longer than the server's timeout plus ``read_slack_s``
        fails (a dead connection must not hang the watch)."""
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s)}
        if resource_version:
            params["resourceVersion"] = resource_version
        async with self.session().get(self.host + path, params=params, headers=self._headers(None),
                                      timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                    sock_read=timeout_s + read_slack_s)) as r:
            if r.status >= 300:
                raise _api_error(r.status, r.reason or "", await r.read())
            while True:
                line = await r.content.readline()
                if not line:
                    return
                line = line.strip()
                if line:
                    yield orjson.loads(line)


def _bearer(cfg) -> str | None:
    key = (getattr(cfg, "api_key", None) or {}).get("authorization") or (getattr(cfg, "api_key", None) or {}).get("BearerToken")
    if not key:
        return None
    prefix = (getattr(cfg, "api_key_prefix", None) or {}).get("authorization")
    if prefix and not key.startswith(prefix):
        return f"{prefix} {key}"
    return key if key.lower().startswith("bearer ") else f"Bearer {key}"


def _api_error(status: int, reason: str, raw: bytes) -> ApiError:
    message = ""
    try:
        doc = orjson.loads(raw)
        if isinstance(doc, dict):
            message = str(doc.get("message") or "")
            reason = str(doc.get("reason") or reason)
    except orjson.JSONDecodeError:
        message = raw[:200].decode(errors="replace")
    return ApiError(status, reason, message)
