"""The status of a coscheduling PodGroup (``scheduling.x-k8s.io/v1alpha1``) once its gang is bound.

The Kubernetes sync (service/k8s_sync.py) sees every pod of a group bound and calls
``PodGroupStatusWriter.scheduled`` when the group's bound pods reach its ``minMember`` and its
status does not say so yet. The writer patches the status subresource, as scheduler-plugins'
PodGroup controller would: ``phase: Scheduling``, which the CRD defines as "the pods scheduled
reached minMember, the running ones have not" (it has no ``Scheduled`` phase and no scheduled
count; ``Running``, ``Finished`` and ``Failed`` follow the pods' phases and are left to that
controller). Only that group kind: Volcano's scheduler owns its PodGroups' status.

Writes are asynchronous (a task on the loop, through the pooled ``KubeClient``), once per group
until the watch shows the new phase; a refused write is logged and counted, never retried in a
loop (the next bind of the group's pods tries again).
"""
from __future__ import annotations

import asyncio
import logging

from .k8s_sync import PODGROUP_API

log = logging.getLogger("gangplace.podgroup")

SCHEDULED_PHASE = "Scheduling"  # the CRD's phase for "minMember pods scheduled, not all running"


def status_path(namespace: str, name: str) -> str:
    group, version, plural = PODGROUP_API
    return f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"


class PodGroupStatusWriter:
    def __init__(self, kube):
        self.kube = kube  # KubeClient (or a fake with ``async request(method, path, body, content_type=)``)
        self._tasks: set[asyncio.Task] = set()
        self.written = self.failed = 0

    def scheduled(self, namespace: str, name: str, bound: int) -> None:
        """Say that PodGroup ``namespace/name`` is scheduled (``bound`` pods bound); on the loop."""
        task = asyncio.ensure_future(self._patch(namespace, name, bound))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _patch(self, namespace: str, name: str, bound: int) -> None:
        try:
            await self.kube.request("PATCH", status_path(namespace, name), {"status": {"phase": SCHEDULED_PHASE}},
                                    content_type="application/merge-patch+json")
            self.written += 1
            log.info("PodGroup %s/%s: phase %s (%d pods bound)", namespace, name, SCHEDULED_PHASE, bound)
        except Exception as e:  # status is best effort: the gang is bound either way
            self.failed += 1
            (log.warning if self.failed == 1 else log.debug)("PodGroup %s/%s status not written: %s",
                                                             namespace, name, e)

    async def drain(self) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
