"""Dynamic Resource Allocation (``resource.k8s.io/v1``): GPUs from ResourceSlices, a pod's GPU count from its claims.

Pure bookkeeping over the objects the Kubernetes sync (service/k8s_sync.py) watches, so it is
testable without a cluster. ``DraIndex`` keeps slim copies of:

- ResourceSlices of the configured ``driver`` that belong to one node (``spec.nodeName``; slices
  for ``allNodes`` or a node selector are network-attached devices and are not a node's GPUs).
  A pool published in several generations counts only its newest one, as the scheduler does. A
  node's GPUs are its devices; its GPU product is the ``product_attribute`` the devices carry
  (the most common value), and each ``topology_attributes`` entry (``name=attribute``) becomes a
  topology level whose value is that attribute of the node's devices -- an NVLink clique shared by
  the GPUs of several nodes, say. Attribute names without a domain are the driver's, as in the API.
- ResourceClaims and ResourceClaimTemplates: per request, the DeviceClass, ``allocationMode``
  and ``count``. A prioritized list (``firstAvailable``) counts its first sub-request, the one the
  scheduler tries first; ``adminAccess`` requests use no device.
- DeviceClass names, to refuse a claim naming a class that does not exist, with that reason.

A pod's GPUs (``pod_gpus``) are the devices its claims ask of the GPU DeviceClasses
(``device_classes``): ``ExactCount`` asks ``count``; ``All`` asks every matching device of the
node, i.e. a whole node: once allocated, the claim's allocated devices, before that the largest
node's GPU count. A claim shared by several pods is counted by each of them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from gangplace.engine.model.errors import InvalidRequest

from .gangs import ClaimsPending, _get

DRA_GROUP, DRA_VERSION = "resource.k8s.io", "v1"
DRA_KINDS = ("resourceslices", "resourceclaims", "resourceclaimtemplates", "deviceclasses")
DEFAULT_DRIVER = "gpu.nvidia.com"  # NVIDIA's DRA driver; its DeviceClass has the same name
DEFAULT_PRODUCT_ATTRIBUTE = "productName"


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    device_class: str
    all: bool  # allocationMode All
    count: int  # ExactCount
    admin: bool = False


@dataclass(frozen=True, slots=True)
class NodeDevices:
    """What a node's ResourceSlices say about its GPUs."""

    count: int
    product: str = ""
    attributes: Mapping[str, str] | None = None  # topology attribute (qualified name) -> value


def parse_topology_attributes(text: str | None) -> tuple[tuple[str, str], ...]:
    """``"clique=gpu.nvidia.com/cliqueId,nvswitch"`` -> ((level name, attribute), ...), top first."""
    out = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, attr = item.partition("=")
        name, attr = (name.strip(), attr.strip()) if sep else (item.rsplit("/", 1)[-1], item)
        if not name or not attr:
            raise InvalidRequest(f"expected NAME=ATTRIBUTE or ATTRIBUTE, got {item!r}", field="dra.topology_attributes")
        out.append((name, attr))
    return tuple(out)


def _attr_value(attr: Any) -> str | None:
    """A DeviceAttribute ({int|bool|string|version}) as a string."""
    if not isinstance(attr, Mapping):
        return None
    for key in ("string", "int", "version", "bool"):
        if key in attr and attr[key] is not None:
            return str(attr[key]).lower() if key == "bool" else str(attr[key])
    return None


def _requests(spec: Any) -> tuple[Request, ...]:
    """The requests of a ResourceClaimSpec (v1: ``exactly`` or ``firstAvailable``)."""
    out = []
    for r in _get(spec, "devices", "requests", default=[]) or []:
        if not isinstance(r, Mapping):
            continue
        exact = r.get("exactly")
        first = r.get("firstAvailable")
        one = exact if isinstance(exact, Mapping) else (first[0] if isinstance(first, list) and first
                                                        and isinstance(first[0], Mapping) else None)
        if one is None:
            continue
        count = one.get("count")
        out.append(Request(name=str(r.get("name", "")), device_class=str(one.get("deviceClassName") or ""),
                           all=one.get("allocationMode") == "All",
                           count=count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1,
                           admin=bool(one.get("adminAccess"))))
    return tuple(out)


class DraIndex:
    """The DRA objects gangplace reads, slimmed, with the node and pod views built from them."""

    def __init__(self, *, driver: str = DEFAULT_DRIVER, device_classes: Iterable[str] = (DEFAULT_DRIVER,),
                 product_attribute: str = DEFAULT_PRODUCT_ATTRIBUTE,
                 topology_attributes: Iterable[tuple[str, str]] = ()):
        self.driver = driver
        self.device_classes = frozenset(device_classes)
        self.product_attribute = self.qualify(product_attribute)
        self.topology_attributes = tuple((n, self.qualify(a)) for n, a in topology_attributes)
        self.slices: dict[str, dict] = {}  # slice name -> {node, pool, generation, devices: [{attribute: value}]}
        self.by_node: dict[str, set[str]] = {}  # node -> its slice names
        self.claims: dict[tuple[str, str], tuple[tuple[Request, ...], int | None]] = {}  # -> (requests, allocated)
        self.templates: dict[tuple[str, str], tuple[Request, ...]] = {}
        self.classes: set[str] | None = None  # None: not listed (API absent or not readable): not checked

    def qualify(self, attribute: str) -> str:
        return attribute if "/" in attribute else f"{self.driver}/{attribute}"

    # ------------------------------------------------------------------ objects
    def put(self, kind: str, obj: Mapping, deleted: bool = False) -> set[str]:
        """Apply one object; returns the nodes whose devices changed (slices only)."""
        name = _get(obj, "metadata", "name")
        if not isinstance(name, str) or not name:
            return set()
        key = (str(_get(obj, "metadata", "namespace", default="default")), name)
        if kind == "resourceslices":
            old = self.slices.pop(name, None)
            new = None if deleted else self._slim_slice(obj)
            if old is not None:
                self.by_node[old["node"]].discard(name)
                if not self.by_node[old["node"]]:
                    del self.by_node[old["node"]]
            if new is not None:
                self.slices[name] = new
                self.by_node.setdefault(new["node"], set()).add(name)
            return {s["node"] for s in (old, new) if s is not None}
        if kind == "resourceclaims":
            if deleted:
                self.claims.pop(key, None)
            else:
                self.claims[key] = (_requests(_get(obj, "spec")), self._allocated(obj))
        elif kind == "resourceclaimtemplates":
            if deleted:
                self.templates.pop(key, None)
            else:
                self.templates[key] = _requests(_get(obj, "spec", "spec"))
        elif kind == "deviceclasses":
            self.classes = set() if self.classes is None else self.classes
            (self.classes.discard if deleted else self.classes.add)(name)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return set()

    def replace(self, kind: str, items: Iterable[Mapping], present: bool = True) -> None:
        """A fresh list of ``kind``; ``present=False``: the API is not served (or not readable)."""
        if kind == "resourceslices":
            self.slices, self.by_node = {}, {}
        elif kind == "resourceclaims":
            self.claims = {}
        elif kind == "resourceclaimtemplates":
            self.templates = {}
        elif kind == "deviceclasses":
            self.classes = set() if present else None
        for obj in items:
            self.put(kind, obj)

    def _slim_slice(self, obj: Mapping) -> dict | None:
        spec = _get(obj, "spec", default={})
        if not isinstance(spec, Mapping) or spec.get("driver") != self.driver:
            return None
        node = spec.get("nodeName")
        if not isinstance(node, str) or not node:  # allNodes / a node selector: not one node's GPUs
            return None
        wanted = {self.product_attribute} | {a for _, a in self.topology_attributes}
        devices = []
        for d in spec.get("devices") or []:
            attrs = d.get("attributes") if isinstance(d, Mapping) else None
            attrs = attrs if isinstance(attrs, Mapping) else {}
            kept = {}
            for k, v in attrs.items():
                q = self.qualify(str(k))
                if q in wanted and (value := _attr_value(v)) is not None:
                    kept[q] = value
            devices.append(kept)
        pool = _get(spec, "pool", default={})
        gen = pool.get("generation", 0) if isinstance(pool, Mapping) else 0
        return {"node": node, "pool": str(_get(pool, "name", default=node)),
                "generation": gen if isinstance(gen, int) else 0, "devices": devices}

    def _allocated(self, claim: Mapping) -> int | None:
        results = _get(claim, "status", "allocation", "devices", "results")
        if not isinstance(results, list):
            return None
        return sum(1 for r in results if isinstance(r, Mapping) and r.get("driver") == self.driver
                   and not r.get("adminAccess"))

    # ------------------------------------------------------------------ nodes
    def _devices(self, node: str) -> list[dict]:
        """The node's devices in the newest generation of each of its pools."""
        slices = [self.slices[n] for n in self.by_node.get(node, ())]
        newest: dict[str, int] = {}
        for s in slices:
            newest[s["pool"]] = max(newest.get(s["pool"], s["generation"]), s["generation"])
        return [d for s in slices if s["generation"] == newest[s["pool"]] for d in s["devices"]]

    def node_devices(self, node: str) -> NodeDevices | None:
        """The node's GPUs from its slices, or None if no slice of the driver names it."""
        if node not in self.by_node:
            return None
        devices = self._devices(node)

        def common(attr: str) -> str | None:
            seen = Counter(d[attr] for d in devices if attr in d)
            return seen.most_common(1)[0][0] if seen else None
        attrs = {a: v for _, a in self.topology_attributes if (v := common(a)) is not None}
        return NodeDevices(len(devices), common(self.product_attribute) or "", attrs)

    def largest_node(self) -> int:
        return max((len(self._devices(n)) for n in self.by_node), default=0)

    # ------------------------------------------------------------------ pods
    def check_class(self, req: Request, where: str) -> None:
        if self.classes is not None and req.device_class not in self.classes:
            raise InvalidRequest(f"request {req.name!r}: DeviceClass {req.device_class!r} does not exist; the "
                                 f"scheduler cannot allocate it and gangplace cannot count it", field=where)

    def pod_gpus(self, pod: Mapping) -> int:
        """The GPUs the pod's claims ask for (0 without claims). Raises InvalidRequest naming the
        claim for a DeviceClass that does not exist, ``ClaimsPending`` for one not synced yet."""
        ns = str(_get(pod, "metadata", "namespace", default="default"))
        refs = _get(pod, "spec", "resourceClaims", default=[]) or []
        if not isinstance(refs, list):
            raise InvalidRequest("must be a list", field="Pod.spec.resourceClaims")
        generated = {str(s.get("name")): s.get("resourceClaimName")
                     for s in _get(pod, "status", "resourceClaimStatuses", default=[]) or [] if isinstance(s, Mapping)}
        total = 0
        for ref in refs:
            if not isinstance(ref, Mapping):
                continue
            claim_name = ref.get("resourceClaimName") or generated.get(str(ref.get("name")))
            template = ref.get("resourceClaimTemplateName")
            allocated = None
            if claim_name and (ns, claim_name) in self.claims:
                requests, allocated = self.claims[(ns, claim_name)]
                where = f"ResourceClaim {ns}/{claim_name}"
            elif template and (ns, template) in self.templates:
                requests, where = self.templates[(ns, template)], f"ResourceClaimTemplate {ns}/{template}"
            elif claim_name or template:
                what = f"ResourceClaim {claim_name!r}" if ref.get("resourceClaimName") or not template \
                    else f"ResourceClaimTemplate {template!r}"
                raise ClaimsPending(f"{what} of pod claim {ref.get('name')!r} is not known yet",
                                    field="Pod.spec.resourceClaims")
            else:
                continue
            total += self._count(requests, allocated, where)
        return total

    def _count(self, requests: tuple[Request, ...], allocated: int | None, where: str) -> int:
        n = 0
        whole_node = False
        for i, req in enumerate(requests):
            self.check_class(req, f"{where}.spec.devices.requests[{i}]")
            if req.device_class not in self.device_classes or req.admin:
                continue
            whole_node |= req.all
            n += 0 if req.all else req.count
        if whole_node:
            return allocated if allocated is not None else n + self.largest_node()
        return n
