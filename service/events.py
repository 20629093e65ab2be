"""Events on pods (``events.k8s.io/v1``): why a gang member is held, where its gang was placed, a failed bind.

``kubectl describe pod`` lists them under Events. The extender calls ``emit`` wherever it has
something to say -- on every filter of a held member, say -- and the recorder decides what is
actually posted, so the API server never sees one Event per filter call:

- per (pod, reason): the same message at most once per ``repeat_s`` (60 s), a changed message at
  most once per ``change_s`` (5 s);
- overall: a token bucket of ``rate`` Events/s (burst ``burst``); what exceeds it is dropped and
  counted (``dropped``), never queued without bound;
- posting is asynchronous (a task on the loop, through the pooled ``KubeClient``): the request
  that emitted never waits for it. A post that fails is counted and logged (the first at warning level).

Reasons: ``GangWaiting`` (Normal: the gang does not fit now, or members wait at bind for the rest),
``GangUnschedulable`` (Warning: the gang can never fit as asked), ``GangPlaced`` (Normal: bound,
with the domains), ``FailedBinding`` (Warning), ``GangPartialBindUndone`` (Warning: the member was
bound, another member's Binding was refused, so it is evicted and the gang re-planned),
``InvalidPod`` (Warning: gangplace cannot read the pod -- a bad gang label, a ResourceClaim naming
a DeviceClass that does not exist -- with the reason the extender's filter answers too).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections import OrderedDict
from typing import Callable

from .binder import PodRef

log = logging.getLogger("gangplace.events")

CONTROLLER = "gangplace.dev/extender"
MAX_NOTE = 1024  # the API server refuses a longer note
MAX_KEYS = 100_000
INVALID_POD = "InvalidPod"


class EventRecorder:
    def __init__(self, kube, *, instance: str | None = None, repeat_s: float = 60.0, change_s: float = 5.0,
                 rate: float = 20.0, burst: int = 100, clock: Callable[[], float] = time.monotonic):
        self.kube = kube  # KubeClient (or a fake with ``async request(method, path, body)``)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.repeat_s, self.change_s = repeat_s, change_s
        self.rate, self.burst = rate, burst
        self.clock = clock
        self._tokens = float(burst)
        self._filled = clock()
        self._last: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()  # (uid, reason) -> (t, message)
        self._tasks: set[asyncio.Task] = set()
        self.posted = self.suppressed = self.dropped = self.failed = 0

    def emit(self, pod: PodRef, reason: str, message: str, *, warning: bool = False) -> bool:
        """Post an Event on ``pod`` unless the limits above say not now. True if one is posted."""
        now = self.clock()
        key = (pod.uid, reason)
        last = self._last.get(key)
        if last is not None:
            gap = now - last[0]
            if gap < (self.repeat_s if last[1] == message else self.change_s):
                self.suppressed += 1
                return False
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled) * self.rate)
        self._filled = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        self._last[key] = (now, message)
        self._last.move_to_end(key)
        while len(self._last) > MAX_KEYS:
            self._last.popitem(last=False)
        task = asyncio.ensure_future(self._post(pod, reason, message, warning))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _post(self, pod: PodRef, reason: str, message: str, warning: bool) -> None:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                # named as client-go names them: the object's name, a dot, the time in hex nanoseconds
                "metadata": {"name": f"{pod.name[:230]}.{time.time_ns():x}", "namespace": pod.namespace},
                "eventTime": now, "reportingController": CONTROLLER, "reportingInstance": self.instance,
                "action": "Scheduling", "reason": reason, "type": "Warning" if warning else "Normal",
                "note": message[:MAX_NOTE],
                "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                              "uid": pod.uid}}
        try:
            await self.kube.request("POST", f"/apis/events.k8s.io/v1/namespaces/{pod.namespace}/events", body)
            self.posted += 1
        except Exception as e:  # an Event is best effort
            self.failed += 1
            (log.warning if self.failed == 1 else log.debug)("event %s on %s/%s not posted: %s", reason, pod.namespace, pod.name, e)

    async def drain(self) -> None:
        """Wait for the Events being posted (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
