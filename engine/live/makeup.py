"""A gang's makeup: its members grouped by shape into pod sets, for the gang planner.

Members of one gang may differ in what they request: a leader next to its workers (JobSet,
LeaderWorkerSet, PyTorchJob masters). Each distinct *shape* -- GPUs, CPU, memory and node
selector, everything the placement reads -- is one pod set of the gang's request, and all of
them are planned together as one gang (engine/place/request.py takes several pod sets).

What the planner knows is the members it has seen (a member is seen when it is filtered). The
members not seen yet are assumed to be of the most common shape seen (``makeup_of``), so a gang
whose members are alike -- the common case -- is one pod set ("members"), planned from its first
member as before. When a member arrives that the plan did not foresee, the planner compares the makeup it
would plan now (``makeup_of``) with the one it planned (``planned_makeup``) and, while nothing
of the gang is being bound, plans the gang again around the members that hold a slot of their
own shape (``grown``; engine/live/coschedule.py).

An elastic gang's minimum (``min_size``) applies to its largest pod set (the workers); the
other pod sets (leaders, drivers) are placed whole.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable, Mapping

from ..model.types import GangRequest, PodSet

if TYPE_CHECKING:  # coschedule imports this module; Member is only a type here
    from .coschedule import Member

# (GPUs, millicores, bytes, node selector as sorted (key, value) pairs)
Shape = tuple[int, int, int, tuple[tuple[str, str], ...]]
SINGLE_POD_SET = "members"  # the pod set of a gang whose members are alike


def shape_of(member: "Member") -> Shape:
    return (member.gpus, member.cpu, member.memory, tuple(sorted(member.node_selector.items())))


def pod_set_shape(ps: PodSet) -> Shape:
    return (ps.gpus, ps.cpu, ps.memory, tuple(sorted(ps.node_selector.items())))


def pod_set_name(shape: Shape) -> str:
    """A pod set's name, readable in reasons and unique per shape: ``8gpu-24000m-214748364800b``
    (node selector values appended)."""
    gpus, cpu, memory, selector = shape
    return "-".join([f"{gpus}gpu", f"{cpu}m", f"{memory}b", *(f"{k}={v}" for k, v in selector)])


def makeup_of(planning: "Member", seen: Iterable["Member"], count: int) -> Counter:
    """How many of ``count`` members have each shape: ``planning`` and the other members ``seen``
    (first come, at most ``count`` in all); the members not seen yet are assumed to be of the
    most common shape seen, on a tie the one with the most GPUs (workers outnumber leaders and
    usually hold more GPUs), then ``planning``'s."""
    makeup: Counter = Counter({shape_of(planning): 1})
    taken = 1
    for m in seen:
        if taken >= count:
            break
        if m.pod_uid != planning.pod_uid:
            makeup[shape_of(m)] += 1
            taken += 1
    if count > taken:
        mine = shape_of(planning)
        rest = max(makeup, key=lambda shape: (makeup[shape], shape[0], shape == mine))
        makeup[rest] += count - taken
    return makeup


def pod_set_counts(slots: Iterable) -> dict[str, int]:
    """How many of ``slots`` (reservation slots) each pod set holds."""
    counts: dict[str, int] = {}
    for s in slots:
        counts[s.pod_set] = counts.get(s.pod_set, 0) + 1
    return counts


def planned_makeup(gang: GangRequest, pod_set_counts: Mapping[str, int]) -> Counter:
    """The makeup of a planned gang from how many unbound slots each of its pod sets holds."""
    shapes = {ps.name: pod_set_shape(ps) for ps in gang.pod_sets}
    out: Counter = Counter()
    for name, n in pod_set_counts.items():
        out[shapes[name]] += n
    return +out


def differs(wanted: Counter, planned: Counter) -> bool:
    """Does a plan of makeup ``planned`` not serve a gang of makeup ``wanted``: a shape it lacks,
    or more slots of a shape than the gang has members of it? (Fewer slots is an elastic gang
    that started with what fit, not a different gang.)"""
    return any(shape not in planned for shape in wanted) or any(n > wanted[shape] for shape, n in planned.items())


def pod_set_for(gang: GangRequest, member: "Member") -> str | None:
    """The name of ``gang``'s pod set of exactly ``member``'s shape, or None."""
    shape = shape_of(member)
    return next((ps.name for ps in gang.pod_sets if pod_set_shape(ps) == shape), None)


def gang_request(planning: "Member", seen: Iterable["Member"], count: int, *, min_count: int | None = None,
                 name: str | None = None) -> GangRequest:
    """The engine request for ``count`` members of ``planning``'s gang: one pod set per shape
    (``makeup_of``), the largest first; a single shape is ``planning.gang_request`` exactly."""
    makeup = makeup_of(planning, seen, count)
    if len(makeup) == 1:
        return planning.gang_request(count, min_count=min_count, name=name)
    sets = sorted(makeup.items(), key=lambda kv: (-kv[1], -kv[0][0], kv[0]))
    pod_sets = []
    for i, (shape, n) in enumerate(sets):
        mc = None
        if i == 0 and min_count is not None:  # the elastic minimum: on the largest pod set only
            mc = max(1, min_count - (count - n))
            mc = None if mc >= n else mc
        gpus, cpu, memory, selector = shape
        pod_sets.append(PodSet(pod_set_name(shape), n, gpus, cpu, memory, mc, dict(selector)))
    return GangRequest(name or planning.gang, tuple(pod_sets), planning.topology, priority=planning.priority)


def grown(gang: GangRequest, kept: Counter, rest: Counter) -> tuple[GangRequest, GangRequest]:
    """A planned gang whose slots ``kept`` (shape -> count) stay, grown by the members ``rest``
    placed next to them: (the request naming every slot's shape, one pod set per shape of both,
    named as in ``gang`` where it had the shape; the request for ``rest`` alone, each pod set whole)."""
    names = {pod_set_shape(ps): ps.name for ps in gang.pod_sets}

    def pod_sets(makeup: Counter) -> tuple[PodSet, ...]:
        out = []
        for shape, n in sorted(makeup.items(), key=lambda kv: (-kv[1], -kv[0][0], kv[0])):
            gpus, cpu, memory, selector = shape
            out.append(PodSet(names.get(shape) or pod_set_name(shape), n, gpus, cpu, memory, None, dict(selector)))
        return tuple(out)
    return replace(gang, pod_sets=pod_sets(kept + rest)), replace(gang, pod_sets=pod_sets(rest))


def subset(gang: GangRequest, counts: Mapping[str, int]) -> GangRequest:
    """``gang`` with ``counts[pod set name]`` members of each pod set (the others dropped), every
    pod set whole: the part of a planned gang that is placed again."""
    pod_sets = tuple(replace(ps, count=counts[ps.name], min_count=None) for ps in gang.pod_sets
                     if counts.get(ps.name, 0) > 0)
    return replace(gang, pod_sets=pod_sets)
