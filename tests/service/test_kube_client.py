"""service/kube_client.py against a stand-in API server (aiohttp): the requests it sends, the answers it reads."""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gangplace.service.kube_client import ApiError, KubeClient


def run_with_server(routes, body):
    async def main():
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        kc = KubeClient(f"http://127.0.0.1:{port}", token="Bearer t0k", pool=4)
        try:
            return await body(kc)
        finally:
            await kc.close()
            await runner.cleanup()
    return asyncio.run(main())


def test_bind_posts_the_binding_with_the_token_and_reports_refusals():
    seen = []

    async def binding(request):
        seen.append((request.match_info["ns"], request.match_info["name"], request.headers.get("Authorization"),
                     orjson.loads(await request.read())))
        if request.match_info["name"] == "taken":
            return web.json_response({"kind": "Status", "reason": "Conflict", "message": "pod taken is already assigned"},
                                     status=409)
        return web.json_response({"kind": "Status", "status": "Success"}, status=201)

    routes = [web.post("/api/v1/namespaces/{ns}/pods/{name}/binding", binding)]

    async def body(kc):
        return await asyncio.gather(kc.bind("ns", "a", "ua", "n1"), kc.bind("ns", "taken", "ub", "n2"))
    ok, refused = run_with_server(routes, body)
    assert ok is None
    assert refused == "HTTP 409 Conflict: pod taken is already assigned"
    first = next(s for s in seen if s[1] == "a")
    assert first == ("ns", "a", "Bearer t0k", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a", "namespace": "ns", "uid": "ua"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})


def test_evict_treats_a_pod_already_gone_as_done_and_reports_a_pdb_refusal():
    async def eviction(request):
        name = request.match_info["name"]
        doc = orjson.loads(await request.read())
        assert doc["kind"] == "Eviction" and doc["metadata"]["name"] == name
        if name == "gone":
            return web.json_response({"kind": "Status", "reason": "NotFound", "message": "not found"}, status=404)
        if name == "pdb":
            return web.json_response({"kind": "Status", "reason": "TooManyRequests",
                                      "message": "would violate the disruption budget"}, status=429)
        return web.json_response({"kind": "Status", "status": "Success"}, status=201)

    async def body(kc):
        return [await kc.evict("ns", n) for n in ("a", "gone", "pdb")]
    got = run_with_server([web.post("/api/v1/namespaces/{ns}/pods/{name}/eviction", eviction)], body)
    assert got == [None, None, "HTTP 429 TooManyRequests: would violate the disruption budget"]


def test_list_pages_follows_continue_tokens_and_watch_yields_every_event_line():
    async def pods(request):
        if request.query.get("watch") == "true":
            assert request.query["resourceVersion"] == "7" and request.query["allowWatchBookmarks"] == "true"
            resp = web.StreamResponse()
            await resp.prepare(request)
            for ev in ({"type": "ADDED", "object": {"metadata": {"name": "p3"}}},
                       {"type": "ERROR", "object": {"code": 410, "message": "too old"}}):
                await resp.write(orjson.dumps(ev) + b"\n")
            await resp.write_eof()
            return resp
        assert request.query["limit"] == "2"
        if request.query.get("continue") == "c1":
            return web.json_response({"metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "p2"}}]})
        return web.json_response({"metadata": {"resourceVersion": "6", "continue": "c1"},
                                  "items": [{"metadata": {"name": "p0"}}, {"metadata": {"name": "p1"}}]})

    async def body(kc):
        pages = [(len(items), rv) async for items, rv in kc.list_pages("/api/v1/pods", limit=2)]
        events = [ev async for ev in kc.watch("/api/v1/pods", resource_version="7")]
        try:
            await kc.request("GET", "/api/v1/nodes")
        except ApiError as e:
            missing = e.status
        return pages, events, missing
    pages, events, missing = run_with_server([web.get("/api/v1/pods", pods)], body)
    assert pages == [(2, "6"), (1, "7")]
    assert [e["type"] for e in events] == ["ADDED", "ERROR"] and events[1]["object"]["code"] == 410
    assert missing == 404


def test_a_watch_or_list_on_a_dead_connection_fails_instead_of_hanging():
    """What the threaded watcher's timeout tests guarded: a server that accepts and then sends
    nothing must not hang the sync forever; the read times out and the sync re-lists."""
    import time

    import aiohttp

    async def stall(request):
        resp = web.StreamResponse()
        await resp.prepare(request)  # headers sent, then silence
        await asyncio.sleep(4)  # longer than both read timeouts below
        return resp

    async def body(kc):
        async def watch():
            return [ev async for ev in kc.watch("/api/v1/pods", resource_version="1", timeout_s=1, read_slack_s=0.5)]

        async def pages():
            return [p async for p in kc.list_pages("/api/v1/pods", timeout_s=1.5)]
        out = []
        for call in (watch, pages):
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(call(), 20)
                out.append(("returned", time.monotonic() - t0))
            except (asyncio.TimeoutError, aiohttp.ClientError) as e:
                out.append((type(e).__name__, time.monotonic() - t0))
        return out
    results = run_with_server([web.get("/api/v1/pods", stall)], body)
    for kind, waited in results:
        assert kind != "returned" and waited < 3.5, results  # the client's read timeout, before the server ends
