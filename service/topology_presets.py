"""Topology levels from Kubernetes node labels: presets for the label keys clusters carry today.

A level is a (name, label key) pair; levels are listed top first. Presets list *candidate*
levels; ``resolve_levels`` keeps only those whose label some node actually carries, because a
level that no node has would make every node its own domain there (and below), which would
erase the topology instead of describing it.

Presets (top first):
- ``topograph-v1``: NVIDIA Topograph's first keys, ``network.topology.nvidia.com/{core,spine,
  block,leaf,accelerator}`` (``accelerator`` is the NVLink domain; ``block`` and ``leaf`` both name
  the switch the nodes hang off, depending on the provider);
- ``topograph-v2``: ``network.topology.nvidia.com/tier-N`` (tier-1 nearest the nodes) and
  ``xclr.topology.nvidia.com/domain`` (the accelerated NVLink domain);
- ``topograph-v3``: ``fabric.topograph.run/tier-N`` and ``accelerator.topograph.run/domain``;
- ``gpu-clique``: ``nvidia.com/gpu.clique`` (the GPU operator's NVLink clique id);
- ``gke``: ``cloud.google.com/gce-topology-{block,subblock,host}``;
- ``aws``: ``topology.k8s.aws/network-node-layer-{1,2,3}`` (layer 1 is the farthest switch);
- ``zone``: ``topology.kubernetes.io/zone``;
- ``auto`` (the default): all of the above, zone first, NVLink domains last; only the keys
  present on the nodes are kept.

Annotations name levels by their node label key (``network.topology.nvidia.com/accelerator``)
or by the level name (``accelerator``); ``LevelMap.level_for`` accepts both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import NODE_LEVEL

HOSTNAME_KEY = "kubernetes.io/hostname"
_TIERS = range(6, 0, -1)  # tier-6 (top) .. tier-1 (nearest the nodes)

PRESETS: dict[str, tuple[tuple[str, str], ...]] = {
    "topograph-v1": tuple((n, f"network.topology.nvidia.com/{n}")
                          for n in ("core", "spine", "block", "leaf", "accelerator")),
    "topograph-v2": tuple((f"tier-{t}", f"network.topology.nvidia.com/tier-{t}") for t in _TIERS)
    + (("xclr-domain", "xclr.topology.nvidia.com/domain"),),
    "topograph-v3": tuple((f"fabric-tier-{t}", f"fabric.topograph.run/tier-{t}") for t in _TIERS)
    + (("accelerator-domain", "accelerator.topograph.run/domain"),),
    "gpu-clique": (("clique", "nvidia.com/gpu.clique"),),
    "gke": tuple((n, f"cloud.google.com/gce-topology-{n}") for n in ("block", "subblock", "host")),
    "aws": tuple((f"layer-{k}", f"topology.k8s.aws/network-node-layer-{k}") for k in (1, 2, 3)),
    "zone": (("zone", "topology.kubernetes.io/zone"),),
}
AUTO_ORDER = ("zone", "topograph-v1", "topograph-v2", "topograph-v3", "gke", "aws", "gpu-clique")


@dataclass(frozen=True, slots=True)
class LevelMap:
    """Topology levels, top first: ``names[i]`` is read from node label ``keys[i]``."""

    names: tuple[str, ...]
    keys: tuple[str, ...]

    def topology_of(self, labels: Mapping[str, str]) -> dict[str, str]:
        """A node's topology (level name -> label value) from its labels; missing labels are left
        out (the node is then its own domain at that level)."""
        return {n: labels[k] for n, k in zip(self.names, self.keys) if labels.get(k)}

    def level_for(self, value: str, *, field: str, allow_node: bool = False) -> str:
        """The level name for an annotation value: a label key or a level name."""
        v = value.strip()
        if v in self.keys:
            return self.names[self.keys.index(v)]
        if v in self.names:
            return v
        if allow_node and v in (HOSTNAME_KEY, NODE_LEVEL):
            return NODE_LEVEL
        known = [f"{k} ({n})" for n, k in zip(self.names, self.keys)]
        raise InvalidRequest(f"unknown topology level {value!r}; the configured levels are {known or 'none'}",
                             field=field)


def candidate_levels(spec: str | Sequence) -> list[tuple[str, str]]:
    """Candidate (name, key) levels for a preset name, a list of presets and/or label keys, or a
    list of ``{"name": ..., "label": ...}`` mappings."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            name, key = item.get("name"), item.get("label")
            if not isinstance(key, str) or not key:
                raise InvalidRequest("each level needs a 'label' (a node label key)", field=f"levels[{i}].label")
            out.append((name if isinstance(name, str) and name else key, key))
        elif item == "auto":
            for p in AUTO_ORDER:
                out.extend(PRESETS[p])
        elif isinstance(item, str) and item in PRESETS:
            out.extend(PRESETS[item])
        elif isinstance(item, str) and item:
            out.append((item.rsplit("/", 1)[-1] or item, item))  # a bare label key
        else:
            raise InvalidRequest(f"expected a preset, a label key or {{name, label}}, got {item!r}",
                                 field=f"levels[{i}]")
    return out


def resolve_levels(spec: str | Sequence, node_labels: Iterable[Mapping[str, str]] | None = None) -> LevelMap:
    """Pick the levels: candidates in order, de-duplicated by key, kept only if some node carries
    the label (all kept when ``node_labels`` is None). Level names that clash get the full key."""
    cands = candidate_levels(spec)
    present: set[str] | None = None
    if node_labels is not None:
        present = set()
        for labels in node_labels:
            present.update(labels)
    names: list[str] = []
    keys: list[str] = []
    for name, key in cands:
        if key in keys or (present is not None and key not in present):
            continue
        if name in names or name == NODE_LEVEL:
            name = key
        names.append(name)
        keys.append(key)
    return LevelMap(tuple(names), tuple(keys))


MAX_LISTED_NODES = 100  # incomplete nodes named in a topology report (all are counted)


def preset_of(key: str) -> str | None:
    """The preset a label key belongs to (None: a key given explicitly)."""
    return next((p for p in AUTO_ORDER if any(k == key for _, k in PRESETS[p])), None)


def describe(levels: LevelMap, node_labels: Mapping[str, Mapping[str, str]], spec: object = None) -> dict:
    """What the levels derived from the nodes look like: per level its label key, the preset it comes
    from and how many domains the nodes form there (a domain is the path of values from the top, as
    the engine counts them); and the nodes that lack a level's label (each is then its own domain at
    that level and below, so a gang cannot be packed around it: usually a node pool labelled
    differently or not labelled yet)."""
    out_levels, incomplete = [], {}
    paths: list[set] = [set() for _ in levels.keys]
    for node, labels in node_labels.items():
        missing = [k for k in levels.keys if not labels.get(k)]
        if missing:
            incomplete[node] = missing
        path: tuple = ()
        for i, k in enumerate(levels.keys):
            path += (labels.get(k) or ("", node),)  # as the engine: a missing label makes the node its own domain
            if labels.get(k):
                paths[i].add(path)
    for i, (name, key) in enumerate(zip(levels.names, levels.keys)):
        out_levels.append({"name": name, "label": key, "preset": preset_of(key), "domains": len(paths[i]),
                           "nodes_labelled": sum(1 for lb in node_labels.values() if lb.get(key))})
    listed = sorted(incomplete)[:MAX_LISTED_NODES]
    return {"spec": spec, "levels": out_levels, "nodes": len(node_labels),
            "incomplete_nodes": len(incomplete), "incomplete": {n: incomplete[n] for n in listed}}


def summary(report: Mapping) -> str:
    """One log line: ``levels block (network.topology.nvidia.com/block, topograph-v1): 2 domains > ...``."""
    levels = " > ".join(f"{lv['name']} ({lv['label']}, {lv['preset'] or 'explicit'}): {lv['domains']} domains"
                        for lv in report["levels"]) or "none (no node carries a configured topology label)"
    line = f"topology levels {levels}; {report['nodes']} nodes"
    if report["incomplete_nodes"]:
        first = ", ".join(f"{n} (missing {', '.join(m)})" for n, m in list(report["incomplete"].items())[:3])
        line += f"; {report['incomplete_nodes']} lack some level's label: {first}"
    return line
