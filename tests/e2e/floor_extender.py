"""The "floor" extender: no logic at all, the throughput reference for any HTTP extender.

It passes every node (``filter``), scores none (``prioritize``), accepts the scheduler's victims
(``preempt``) and posts the Binding (``bind``) with one pooled aiohttp session, in the
``k8s.io/kube-scheduler/extender/v1`` wire format that gangplace speaks. Whatever rate the
scheduler reaches through it is the ceiling for an extender with the same verbs.

    python tests/e2e/floor_extender.py --port 8889 --server https://127.0.0.1:6443 \\
        --ca ca.crt --cert admin.crt --key admin.key
"""
from __future__ import annotations

import argparse
import ssl

import orjson
from aiohttp import ClientSession, TCPConnector, web


def make_app(server: str, ssl_ctx: ssl.SSLContext) -> web.Application:
    app = web.Application()

    async def start(app):
        app["session"] = ClientSession(base_url=server, connector=TCPConnector(ssl=ssl_ctx, limit=64))

    async def close(app):
        await app["session"].close()

    def reply(obj) -> web.Response:
        return web.Response(body=orjson.dumps(obj), content_type="application/json")

    async def filter_(request: web.Request):
        args = orjson.loads(await request.read())
        names = args.get("NodeNames")
        nodes = args.get("Nodes")
        if names is None and nodes:
            names = [n["metadata"]["name"] for n in nodes.get("items") or []]
        return reply({"Nodes": nodes if args.get("NodeNames") is None else None, "NodeNames": names,
                      "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""})

    async def prioritize(request: web.Request):
        await request.read()
        return reply([])

    async def preempt(request: web.Request):
        args = orjson.loads(await request.read())
        return reply({"NodeNameToMetaVictims": args.get("NodeNameToMetaVictims") or {}})

    async def bind(request: web.Request):
        args = orjson.loads(await request.read())
        ns, name = args["PodNamespace"], args["PodName"]
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "uid": args["PodUID"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": args["Node"]}}
        async with app["session"].post(f"/api/v1/namespaces/{ns}/pods/{name}/binding", data=orjson.dumps(body),
                                       headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
        return reply({"Error": "" if r.status < 300 else f"binding {ns}/{name}: HTTP {r.status}: {text[:300]}"})

    async def healthz(request: web.Request):
        return web.Response(text="ok")

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    app.add_routes([web.post("/filter", filter_), web.post("/prioritize", prioritize),
                    web.post("/preempt", preempt), web.post("/bind", bind), web.get("/healthz", healthz)])
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server", required=True, help="API server URL")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    web.run_app(make_app(args.server, ctx), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
