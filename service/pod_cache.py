"""The extender's cache of parsed pods, by UID: what filter saw, for prioritize, bind and preempt.

Bounded twice, oldest first out: by count (``max_pods``) and by the pods' JSON bytes
(``max_bytes``, config ``limits.pod_cache_max_bytes``), since one pod can carry megabytes of node
selectors; ``gangplace_pod_cache_bytes`` exports the current size. The newest pod always stays.

``parse`` also remembers the JSON of the last ``RECENT`` pods parsed (of at most
``RECENT_MAX_BYTES`` each, so at most 4 MiB): kube-scheduler sends the same Pod to filter and then
to prioritize (and again on each retry), and a pod whose JSON is byte for byte the same is not
parsed again when its reading cannot have changed (see ``parse``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import orjson

from .gangs import PodInfo

MAX_PODS = 200_000
MAX_BYTES = 64 * 2**20
RECENT = 256
RECENT_MAX_BYTES = 16 * 2**10  # a pod's JSON is a few KB; one with huge selectors is parsed each time


class PodCache:
    def __init__(self, max_pods: int = MAX_PODS, max_bytes: int = MAX_BYTES):
        self.max_pods, self.max_bytes = max_pods, max_bytes
        self.bytes = 0  # the JSON size of every pod held
        self._pods: OrderedDict[str, PodInfo] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._recent: dict[str, tuple[bytes, object, PodInfo]] = {}  # uid -> (JSON, context, PodInfo)

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

    def parse(self, pod_json: Any, parse: Callable[[Any], PodInfo], context: object) -> PodInfo:
        """``parse(pod_json)``, kept as the newest pod; the previous answer when the same pod's JSON
        is byte-identical to one of the last ``RECENT`` parsed with the same ``context`` (the
        reader's inputs besides the pod: the level map, which the sync replaces) and its reading
        depends on nothing else (no gang, or a gangplace-label gang: a PodGroup's size is looked
        up, and a pod's DRA claims are counted from the sync's index, so such pods are always
        parsed again)."""
        raw = orjson.dumps(pod_json)
        meta = pod_json.get("metadata") if isinstance(pod_json, dict) else None
        uid = meta.get("uid") if isinstance(meta, dict) else None
        seen = self._recent.get(uid) if isinstance(uid, str) else None
        if seen is not None and seen[1] is context and seen[0] == raw:
            pod = seen[2]
        else:
            pod = parse(pod_json)
            spec = pod_json.get("spec") if isinstance(pod_json, dict) else None
            if (len(raw) <= RECENT_MAX_BYTES and (pod.gang is None or pod.gang.source == "gangplace")
                    and not (isinstance(spec, dict) and spec.get("resourceClaims"))):  # claims: read from the sync
                self._recent.pop(pod.uid, None)
                self._recent[pod.uid] = (raw, context, pod)
                if len(self._recent) > RECENT:
                    del self._recent[next(iter(self._recent))]
        self.put(pod, len(raw))
        return pod

    def get(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pop(self, uid: str) -> PodInfo | None:
        self._recent.pop(uid, None)
        self.bytes -= self._sizes.pop(uid, 0)
        return self._pods.pop(uid, None)
