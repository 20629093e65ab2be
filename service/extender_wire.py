"""The extender's wire format and HTTP plumbing (``k8s.io/kube-scheduler/extender/v1``, as
recorded from real schedulers in tests/fixtures/kube-scheduler-extender).

Request bodies are checked into plain values: only the shape is checked here, a body that does
not parse into it raises ``BadBody`` and the handler answers HTTP 400. What the Pod *says*
(labels, requests) is read by service/gangs.py; what to answer, by service/extender.py. Replies
are built here (``filter_reply``, ``timed_out_reply``), and ``add_routes`` mounts an extender's
verbs on an aiohttp app, applying the deadline the service's middleware sets.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping  # isinstance checks: ~3x faster than typing.Mapping's
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("gangplace.extender")

PREFIX = "gangplace: "
VERBS = ("filter", "prioritize", "bind", "preempt")


@dataclass(slots=True)
class Deadline:
    """Set by the service's middleware on an extender request (``request[DEADLINE_KEY]``)."""

    at: float  # loop.time() by which the verb must answer
    limit_s: float  # the limit that was applied (for the message)
    hit: bool = False  # the verb ran past it and was answered with its error shape


DEADLINE_KEY = web.RequestKey("gangplace.deadline", Deadline)


class BadBody(Exception):
    """The request body does not parse into the extender's shape (HTTP 400)."""


def loads_strict(raw: bytes) -> Any:
    """``orjson.loads`` (which refuses NaN, lone surrogates and deep nesting), then a second
    parse refusing an object with a key twice (BadBody): "the last one wins" would let two
    readers of one body disagree. The second parse costs ~0.3 ms per 27 KB filter body, so it
    runs only when ``_surely_unique_keys`` cannot rule duplicates out (which it does in ~1/5 of that)."""
    body = orjson.loads(raw)
    if isinstance(body, (dict, list)) and not _surely_unique_keys(raw, body):
        try:
            json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except ValueError as e:
            raise BadBody(str(e)) from None
    return body


def _surely_unique_keys(raw: bytes, body: Any) -> bool:
    """True only if no object in ``raw`` (the JSON ``body`` was decoded from) has a key twice.

    Every ``:`` of valid JSON is either the one after an object key or a character inside a
    string. Re-encoding ``body`` keeps every string and one key of each name, so without ``\\u``
    escapes in ``raw`` (through which a string may hold a ``:`` that ``raw`` does not show) the
    two texts hold the same number of ``:`` exactly when no key was dropped, i.e. none was
    repeated; a repeated key leaves ``raw`` with more. False means "unknown": parse again."""
    if not isinstance(raw, bytes) or b"\\u" in raw:
        return False
    try:
        again = orjson.dumps(body)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return False
    return raw.count(b":") == again.count(b":")


def _no_duplicate_keys(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {dup[:64]!r} in a JSON object")
    return d


def filter_args(args: Any) -> tuple[Mapping, list[str], list | None]:
    """(Pod, node names, Node items or None) from ExtenderArgs; BadBody when the shape is wrong."""
    if not isinstance(args, Mapping):
        raise BadBody("body must be a JSON object (ExtenderArgs)")
    pod = args.get("Pod")
    check_pod_shape(pod)
    names, nodes = args.get("NodeNames"), args.get("Nodes")
    if names is not None:
        if not isinstance(names, list) or (names and (set(map(type, names)) != {str} or "" in names)):
            raise BadBody("NodeNames must be a list of node names")
        return pod, list(names), None
    if nodes is None:
        raise BadBody("one of Nodes or NodeNames is required")
    items = nodes.get("items") if isinstance(nodes, Mapping) else None
    if not isinstance(items, list):
        raise BadBody("Nodes must be a NodeList with items")
    out = []
    for k, it in enumerate(items):
        name = it.get("metadata", {}).get("name") if isinstance(it, Mapping) and isinstance(
            it.get("metadata"), Mapping) else None
        if not isinstance(name, str) or not name:
            raise BadBody(f"Nodes.items[{k}].metadata.name is required")
        out.append(name)
    return pod, out, items


def check_pod_shape(pod: Any) -> None:
    if not isinstance(pod, Mapping):
        raise BadBody("Pod must be an object")
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        raise BadBody("Pod.metadata must be an object")
    for f in ("name", "uid"):
        if not isinstance(meta.get(f), str) or not meta.get(f):
            raise BadBody(f"Pod.metadata.{f} is required")
    if pod.get("spec") is not None and not isinstance(pod.get("spec"), Mapping):
        raise BadBody("Pod.spec must be an object")


def bind_args(args: Any) -> tuple[str, str, str, str]:
    """An ExtenderBindingArgs body -> (PodName, PodNamespace or "default", PodUID, Node)."""
    if not isinstance(args, Mapping):
        raise BadBody("body must be a JSON object")
    fields = {}
    for f in ("PodName", "PodNamespace", "PodUID", "Node"):
        v = args.get(f)
        if not isinstance(v, str) or (not v and f != "PodNamespace"):
            raise BadBody(f"{f} must be a non-empty string")
        fields[f] = v
    return fields["PodName"], fields["PodNamespace"] or "default", fields["PodUID"], fields["Node"]


def preempt_args(args: Any) -> tuple[Mapping, dict[str, tuple[list[str], int, list | None]]]:
    """(preemptor Pod, node -> (victim UIDs, NumPDBViolations, full victim Pods or None))."""
    if not isinstance(args, Mapping):
        raise BadBody("body must be a JSON object (ExtenderPreemptionArgs)")
    pod = args.get("Pod")
    check_pod_shape(pod)
    full, meta = args.get("NodeNameToVictims"), args.get("NodeNameToMetaVictims")
    out: dict[str, tuple[list[str], int, list | None]] = {}
    source = meta if meta is not None else full
    if source is None:
        return pod, out
    if not isinstance(source, Mapping):
        raise BadBody("NodeNameToVictims / NodeNameToMetaVictims must be objects")
    for node, v in source.items():
        if not isinstance(v, Mapping) or not isinstance(v.get("Pods") or [], list):
            raise BadBody(f"victims of {node} must be {{Pods, NumPDBViolations}}")
        pods = v.get("Pods") or []
        pdb = v.get("NumPDBViolations") or 0
        if isinstance(pdb, bool) or not isinstance(pdb, int):
            raise BadBody(f"NumPDBViolations of {node} must be an integer")
        uids = []
        for p in pods:
            uid = p.get("UID") if meta is not None and isinstance(p, Mapping) else (
                p.get("metadata", {}).get("uid") if isinstance(p, Mapping) and isinstance(p.get("metadata"), Mapping)
                else None)
            if not isinstance(uid, str) or not uid:
                raise BadBody(f"every victim on {node} needs a UID")
            uids.append(uid)
        out[node] = (uids, pdb, None if meta is not None else pods)
    return pod, out



def filter_reply(names: list[str], items: list | None, passing: list[str], failed: dict[str, str],
                 unresolvable: dict[str, str], error: str = "") -> dict:
    """ExtenderFilterResult in the request's nodeCacheCapable mode (NodeNames or Nodes)."""
    keep = set(passing)
    if items is None:
        return {"Nodes": None, "NodeNames": [n for n in names if n in keep],
                "FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable, "Error": error}
    return {"Nodes": {"metadata": {}, "items": [it for it, n in zip(items, names) if n in keep]},
            "NodeNames": None, "FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable, "Error": error}


def timed_out_reply(verb: str, body: Any, limit_s: float) -> Any:
    """The verb's answer when it ran past the request time limit: HTTP 200 with the verb's error
    shape (the scheduler retries an ``Error``; any non-200 it retries as a failure forever).
    Raises ``BadBody`` if the body does not parse into the verb's arguments."""
    msg = f"{PREFIX}{verb} took longer than {limit_s:g} s; retrying"
    if verb == "filter":
        _, names, items = filter_args(body)
        return filter_reply(names, items, [], {}, {}, msg)
    if verb == "prioritize":
        filter_args(body)
        return []  # no scores: the scheduler ranks the nodes without this extender
    if verb == "preempt":
        preempt_args(body)
        return {"NodeNameToMetaVictims": {}}  # no victim set accepted
    return {"Error": msg}  # bind: the scheduler retries the pod


def check_pod_limits(ext, body: Any) -> None:
    """A Pod whose labels, nodeSelector and affinity together exceed ``ext.max_selector_bytes``
    (config ``limits.max_selector_bytes``) is refused (HTTP 400) before any work."""
    limit = getattr(ext, "max_selector_bytes", None)
    pod = body.get("Pod") if isinstance(body, Mapping) else None
    if limit is None or not isinstance(pod, Mapping):
        return
    meta, spec = pod.get("metadata"), pod.get("spec")
    parts = [meta.get("labels") if isinstance(meta, Mapping) else None,
             meta.get("annotations") if isinstance(meta, Mapping) else None,
             spec.get("nodeSelector") if isinstance(spec, Mapping) else None,
             spec.get("affinity") if isinstance(spec, Mapping) else None]
    size = len(orjson.dumps(parts))
    if size > limit:
        raise BadBody(f"Pod labels, annotations, nodeSelector and affinity: {size:,} bytes; the server's limit is "
                      f"{limit:,} (limits.max_selector_bytes)")


class RecentBodies:
    """The last few request bodies that parsed and passed the checks, by their exact bytes:
    kube-scheduler sends filter and then prioritize the same body when every node passed (a pod
    outside any gang), so the second is not decoded and checked again. Small bodies only; the
    parsed bodies are shared between requests, so the verbs must not change them."""

    def __init__(self, size: int = 4, max_body_bytes: int = 2**20):
        self.size, self.max_body_bytes = size, max_body_bytes
        self._bodies: dict[bytes, tuple[object, Any]] = {}  # raw -> (the limit it was checked with, body)

    def load(self, ext, raw: bytes) -> Any:
        """``loads_strict`` then ``check_pod_limits`` (raising as they do), or their earlier answer."""
        limit = getattr(ext, "max_selector_bytes", None)
        hit = self._bodies.get(raw)
        if hit is not None and hit[0] == limit:
            return hit[1]
        body = loads_strict(raw)
        check_pod_limits(ext, body)
        if len(raw) <= self.max_body_bytes:
            self._bodies.pop(raw, None)
            self._bodies[raw] = (limit, body)
            if len(self._bodies) > self.size:
                del self._bodies[next(iter(self._bodies))]
        return body


def http_handler(ext, verb: str, bodies: RecentBodies | None = None):
    """The aiohttp handler of one verb of ``ext`` (an ``Extender``): JSON in, JSON out, HTTP 400
    for a body of the wrong shape, the verb's error shape past the request's deadline. ``bodies``
    (filter and prioritize): bodies parsed before, shared between the verbs (``RecentBodies``)."""
    method = getattr(ext, verb)

    async def handle(request: web.Request) -> web.Response:
        # the service's middleware sets the deadline (request_timeout_s, or the /bind limit);
        # a standalone app (make_app) has none
        deadline = request.get(DEADLINE_KEY)
        if deadline is None:
            raw = await request.read()
        else:  # a client that stalls mid-body: TimeoutError reaches the middleware (HTTP 504:
            async with asyncio.timeout_at(deadline.at):  # there is no request to answer in shape)
                raw = await request.read()
        try:
            if bodies is not None:
                body = bodies.load(ext, raw)
            else:
                body = loads_strict(raw)
                check_pod_limits(ext, body)
            if deadline is None:
                out = await method(body)
            else:
                try:
                    async with asyncio.timeout_at(deadline.at):  # no extra task, unlike wait_for
                        out = await method(body)
                except TimeoutError:
                    log.warning("%s took longer than %g s: answering with the verb's error", verb, deadline.limit_s)
                    deadline.hit = True
                    out = ext.timed_out(verb, body, deadline.limit_s)
        except (orjson.JSONDecodeError, BadBody) as e:
            ext.counters["bad_request"] = ext.counters.get("bad_request", 0) + 1
            return web.Response(status=400, text=f"{PREFIX}{e}\n", content_type="text/plain")
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    return handle


def add_routes(app: web.Application, ext, prefix: str = "") -> None:
    """Mount POST {prefix}/filter, /prioritize, /bind and /preempt of an ``Extender`` on an aiohttp app."""
    bodies = RecentBodies()
    for verb in VERBS:
        app.router.add_post(f"{prefix}/{verb}", http_handler(ext, verb, bodies if verb in ("filter", "prioritize")
                                                             else None))


def make_app(ext, *, max_body_bytes: int = 64 * 2**20) -> web.Application:
    """A standalone app with only the extender routes (tests, or running without gRPC)."""
    app = web.Application(client_max_size=max_body_bytes)
    add_routes(app, ext)
    return app
