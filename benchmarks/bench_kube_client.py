"""The bind path through each candidate Kubernetes client, on a real API server (docs/benchmarks.md).

How the asyncio client of service/kube_client.py was chosen: on one control plane
(tests/e2e/harness.py, `make kube`), for each client in turn, ``--pods`` pending pods are bound
(``POST pods/{name}/binding``) with ``--concurrency`` binds in flight, as the extender does when
the scheduler sends binds back to back; reported: binds/s and the mean / p99 latency of one bind.
The clients are interleaved over ``--runs`` rounds, the order rotated each round (median reported):

- ``official+threads``: the synchronous ``kubernetes`` client in the default thread pool (what
  service/binder.py did before);
- ``kubernetes-asyncio``: ``CoreV1Api.create_namespaced_pod_binding`` (``_preload_content=False``);
- ``lightkube``: ``AsyncClient.create(PodBinding(...))``;
- ``aiohttp``: service/kube_client.py (one pooled ``aiohttp.ClientSession``, orjson).

``kubernetes-asyncio`` and ``lightkube`` are not project dependencies: install them to run this
(``.venv/bin/pip install kubernetes-asyncio lightkube``); a missing one is skipped.

    .venv/bin/python benchmarks/bench_kube_client.py [--pods 400] [--concurrency 8] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.harness import ControlPlane, gpu_pod, missing_components  # noqa: E402

CLIENTS = ("official+threads", "kubernetes-asyncio", "lightkube", "aiohttp")


def _caught(bind):
    """An async bind that returns its exception (the error column) instead of raising it."""
    async def call(*args):
        try:
            await bind(*args)
        except Exception as e:  # noqa: BLE001 -- every client's own error types count as a failed bind
            return e
        return None
    return call


async def _drive(bind_one, pods: list[tuple[str, str, str]], node: str, concurrency: int) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    queue = list(pods)

    async def worker():
        while queue:
            ns, name, uid = queue.pop()
            t = time.perf_counter()
            err = await bind_one(ns, name, uid, node)
            lat.append(time.perf_counter() - t)
            if err:
                errors.append(str(err)[:200])

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {"binds_per_s": round(len(pods) / wall, 1), "mean_ms": round(1000 * statistics.fmean(lat), 2),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2), "errors": len(errors),
            "first_error": errors[0] if errors else None}


async def run_client(name: str, kubeconfig: str, pods, node: str, concurrency: int) -> dict:
    if name == "official+threads":
        from kubernetes import client, config
        core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

        def one(ns, pod, uid, node_name):
            body = client.V1Binding(metadata=client.V1ObjectMeta(name=pod, namespace=ns, uid=uid),
                                    target=client.V1ObjectReference(api_version="v1", kind="Node", name=node_name))
            try:
                core.create_namespaced_pod_binding(pod, ns, body, _preload_content=False)
            except Exception as e:
                return e
            return None
        loop = asyncio.get_running_loop()
        return await _drive(lambda *a: loop.run_in_executor(None, one, *a), pods, node, concurrency)
    if name == "kubernetes-asyncio":
        from kubernetes_asyncio import client, config
        api_client = await config.new_client_from_config(config_file=kubeconfig)
        core = client.CoreV1Api(api_client)

        async def one(ns, pod, uid, node_name):
            body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns, "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
            r = await core.create_namespaced_pod_binding(pod, ns, body, _preload_content=False)
            await r.read()
            r.release()
        try:
            return await _drive(_caught(one), pods, node, concurrency)
        finally:
            await api_client.close()
    if name == "lightkube":
        from lightkube import AsyncClient, KubeConfig
        from lightkube.models.core_v1 import ObjectReference
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import PodBinding
        lk = AsyncClient(config=KubeConfig.from_file(kubeconfig))

        async def one(ns, pod, uid, node_name):
            await lk.create(PodBinding(metadata=ObjectMeta(name=pod, namespace=ns, uid=uid),
                                       target=ObjectReference(apiVersion="v1", kind="Node", name=node_name)),
                            pod, namespace=ns)
        try:
            return await _drive(_caught(one), pods, node, concurrency)
        finally:
            await lk.close()
    from gangplace.service.kube_client import KubeClient
    kc = KubeClient.from_kubeconfig(kubeconfig, pool=max(concurrency, 8))
    try:
        return await _drive(kc.bind, pods, node, concurrency)
    finally:
        await kc.close()


def available(name: str) -> bool:
    mod = {"kubernetes-asyncio": "kubernetes_asyncio", "lightkube": "lightkube"}.get(name)
    if mod is None:
        return True
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=400, help="binds per client per run")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-kube-client.json")
    args = p.parse_args(argv)
    if missing_components():
        print(f"missing {', '.join(missing_components())}: run `make kube`", file=sys.stderr)
        return 2
    clients = [c for c in CLIENTS if available(c)]
    skipped = [c for c in CLIENTS if c not in clients]
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}", file=sys.stderr)
    results: dict[str, list[dict]] = {c: [] for c in clients}
    with ControlPlane() as cp:
        kube = cp.admin
        kube.apply_node("n0", labels={}, gpus=8)
        kubeconfig = str(cp.kubeconfig("admin"))
        for r in range(args.runs):
            for c in clients[r % len(clients):] + clients[:r % len(clients)]:  # each client first in turn
                ns = f"b{r}-{clients.index(c)}"
                kube.ensure_namespace(ns)
                with ThreadPoolExecutor(8) as pool:
                    made = list(pool.map(lambda i: kube.create_pod(ns, gpu_pod(f"p-{i}", gpus=0)), range(args.pods)))
                pods = [(ns, m["metadata"]["name"], m["metadata"]["uid"]) for m in made]
                res = asyncio.run(run_client(c, kubeconfig, pods, "n0", args.concurrency))
                res.update(client=c, run=r)
                print(json.dumps(res), flush=True)
                results[c].append(res)
                kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods", params={"gracePeriodSeconds": "0"})
    print(f"\nmedian of {args.runs} run(s): {args.pods} binds, {args.concurrency} in flight")
    print(f"{'client':<20}{'binds/s':>10}{'mean ms':>10}{'p99 ms':>10}{'errors':>8}")
    summary = {}
    for c, rs in results.items():
        s = {k: statistics.median(x[k] for x in rs) for k in ("binds_per_s", "mean_ms", "p99_ms")}
        s["errors"] = sum(x["errors"] for x in rs)
        summary[c] = s
        print(f"{c:<20}{s['binds_per_s']:>10.1f}{s['mean_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['errors']:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results, "median": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
