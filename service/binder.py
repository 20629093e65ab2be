"""Where binds and evictions go: the local state (file mode) or the Kubernetes API.

The extender calls a ``Binder`` once per gang with every member at once, so a gang is bound
whole or reported failed member by member; tests use ``FileBinder`` or a fake.

- ``FileBinder``: commits the binds to the ``ClusterState`` (journaled) in one atomic step and
  answers once the journal line is on disk, waiting for the (group-committed) fsync in a thread
  so the event loop keeps serving; an eviction forgets the allocations, one journal line batch.
- ``KubeBinder``: ``POST /api/v1/namespaces/{ns}/pods/{name}/binding`` per member (what the
  default binder does), then records the allocation in the state at once so the next filter
  sees it before the watch event arrives; evictions go through the Eviction API
  (``pods/eviction``), so PodDisruptionBudgets are honoured. Calls go through the asyncio client
  (``service/kube_client.py``): concurrent, on pooled connections, on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.live.state import BindRecord, ClusterState

log = logging.getLogger("gangplace.binder")


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, pod: Any) -> "PodRef":
        """The reference of a Pod object (what it lacks is left empty)."""
        meta = pod.get("metadata") if isinstance(pod, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        return cls(str(meta.get("namespace") or "default"), str(meta.get("name") or ""), str(meta.get("uid") or ""))


class Binder(Protocol):
    async def bind(self, records: Sequence[BindRecord]) -> list[str | None]:
        """Bind every record; per record None (done) or an error message."""

    async def evict(self, pods: Sequence[PodRef]) -> list[str | None]:
        """Evict every pod; per pod None (done or already gone) or an error message."""


class FileBinder:
    """File mode: the state is the source of truth."""

    def __init__(self, state: ClusterState):
        self.state = state

    async def bind(self, records: Sequence[BindRecord]) -> list[str | None]:
        try:  # under the state lock: check, write the journal line (no fsync), apply
            seq = self.state.bind_many(records, wait=False)
        except GangplaceError as e:
            return [str(e)] * len(records)
        except OSError as e:  # the journal cannot be written (JournalError): nothing changed
            return [f"gangplace: {e}"] * len(records)
        return [await self._durable(seq)] * len(records)

    async def evict(self, pods: Sequence[PodRef]) -> list[str | None]:
        try:
            self.state.unbind_many([p.uid for p in pods], wait=False)
        except (GangplaceError, OSError) as e:
            return [f"gangplace: {e}"] * len(pods)
        return [await self._durable()] * len(pods)

    async def _durable(self, seq: int | None = None) -> str | None:
        """Acknowledge only once the journal line is on disk. The wait (a shared fsync, group
        commit) runs in a thread, outside the state lock, so the event loop keeps serving HTTP
        and gRPC meanwhile. None, or an error if the journal failed (the change is then not
        acknowledged; the scheduler retries it)."""
        if self.state.is_durable(seq):
            return None
        try:
            await asyncio.to_thread(self.state.wait_durable, seq)
        except OSError as e:
            return f"gangplace: {e}"
        return None


class KubeBinder:
    """Kubernetes mode: Bindings and Evictions through the API server, on the asyncio client
    (service/kube_client.py: one pooled aiohttp session; no thread in the request path)."""

    def __init__(self, state: ClusterState, kube, *, scheduler_name: str = "gangplace",
                 is_gone: Callable[[str], bool] | None = None):
        self.state = state
        self.kube = kube  # KubeClient (or a fake with async bind/evict, in tests)
        self.scheduler_name = scheduler_name
        # the watch already saw this pod UID deleted or finished (k8s_sync.SyncState.was_deleted)
        self.is_gone = is_gone

    async def _bind_one(self, rec: BindRecord) -> str | None:
        err = await self.kube.bind(rec.namespace, rec.name, rec.pod_uid, rec.node)
        if err:
            return f"binding {rec.namespace}/{rec.name} to {rec.node} failed: {err}"
        # The watch may have reported the pod deleted while the Binding was in flight (a pod
        # force-deleted right after it was bound): recording it now would count its GPUs forever.
        # The check and the record hold the state lock, and the sync marks a UID gone before it
        # unbinds it (under the same lock), so either the record is skipped or the unbind follows it.
        with self.state.lock:
            if self.is_gone is not None and self.is_gone(rec.pod_uid):
                log.info("bound %s/%s, but the watch saw it deleted meanwhile: not counted", rec.namespace, rec.name)
                return None
            try:
                seq = self.state.bind_many([rec], allow_overcommit=True, wait=False)
            except GangplaceError as e:  # the node vanished meanwhile; the watch will catch up
                log.warning("bound %s/%s but could not record it: %s", rec.namespace, rec.name, e)
                return None
        self.state.wait_durable(seq)  # outside the lock (a journal's fsync), as bind_many's own wait
        return None

    async def _evict_one(self, pod: PodRef) -> str | None:
        err = await self.kube.evict(pod.namespace, pod.name)
        return f"evicting {pod.namespace}/{pod.name} failed: {err}" if err else None

    async def bind(self, records: Sequence[BindRecord]) -> list[str | None]:
        if len(records) == 1:  # a pod outside any gang: no task to wrap it in
            return [await self._bind_one(records[0])]
        return list(await asyncio.gather(*(self._bind_one(r) for r in records)))

    async def evict(self, pods: Sequence[PodRef]) -> list[str | None]:
        return list(await asyncio.gather(*(self._evict_one(p) for p in pods)))
