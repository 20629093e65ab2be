"""The extender's cache of parsed pods, by UID: what filter saw, for prioritize, bind and preempt.

Bounded twice, oldest first out: by count (``max_pods``) and by the pods' JSON bytes
(``max_bytes``, config ``limits.pod_cache_max_bytes``), since one pod can carry megabytes of node
selectors; ``gangplace_pod_cache_bytes`` exports the current size. The newest pod always stays.
"""
from __future__ import annotations

from collections import OrderedDict

from .gangs import PodInfo

MAX_PODS = 200_000
MAX_BYTES = 64 * 2**20


class PodCache:
    def __init__(self, max_pods: int = MAX_PODS, max_bytes: int = MAX_BYTES):
        self.max_pods, self.max_bytes = max_pods, max_bytes
        self.bytes = 0  # the JSON size of every pod held
        self._pods: OrderedDict[str, PodInfo] = OrderedDict()
        self._sizes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pods)

    def put(self, pod: PodInfo, size: int) -> None:
        """Keep ``pod`` (its JSON ``size`` bytes) as the newest; drop the oldest beyond the bounds."""
        self._pods[pod.uid] = pod
        self._pods.move_to_end(pod.uid)
        self.bytes += size - self._sizes.get(pod.uid, 0)
        self._sizes[pod.uid] = size
        while len(self._pods) > 1 and (len(self._pods) > self.max_pods or self.bytes > self.max_bytes):
            uid, _ = self._pods.popitem(last=False)
            self.bytes -= self._sizes.pop(uid, 0)

    def get(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pop(self, uid: str) -> PodInfo | None:
        self.bytes -= self._sizes.pop(uid, 0)
        return self._pods.pop(uid, None)
