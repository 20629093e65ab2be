from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PodSet(_message.Message):
    __slots__ = ("name", "count", "gpus", "cpu", "memory", "min_count", "node_selector")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    gpus: int
    cpu: int
    memory: int
    min_count: int
    node_selector: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., gpus: _Optional[int] = ..., cpu: _Optional[int] = ..., memory: _Optional[int] = ..., min_count: _Optional[int] = ..., node_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SliceLayer(_message.Message):
    __slots__ = ("size", "level")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    size: int
    level: str
    def __init__(self, size: _Optional[int] = ..., level: _Optional[str] = ...) -> None: ...

class TopologyConstraint(_message.Message):
    __slots__ = ("required", "preferred", "slices")
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    required: str
    preferred: str
    slices: _containers.RepeatedCompositeFieldContainer[SliceLayer]
    def __init__(self, required: _Optional[str] = ..., preferred: _Optional[str] = ..., slices: _Optional[_Iterable[_Union[SliceLayer, _Mapping]]] = ...) -> None: ...

class Gang(_message.Message):
    __slots__ = ("name", "pod_sets", "topology", "priority")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POD_SETS_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    pod_sets: _containers.RepeatedCompositeFieldContainer[PodSet]
    topology: TopologyConstraint
    priority: int
    def __init__(self, name: _Optional[str] = ..., pod_sets: _Optional[_Iterable[_Union[PodSet, _Mapping]]] = ..., topology: _Optional[_Union[TopologyConstraint, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class PodAssignment(_message.Message):
    __slots__ = ("pod_set", "index", "node")
    POD_SET_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    pod_set: str
    index: int
    node: str
    def __init__(self, pod_set: _Optional[str] = ..., index: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class LevelValue(_message.Message):
    __slots__ = ("level", "value")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    level: str
    value: int
    def __init__(self, level: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("gang", "placed", "pods", "domains_used", "stranded_gpus", "placer", "optimal", "gap", "elapsed_ms", "reason", "explanation_json", "solver_import_ms")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_USED_FIELD_NUMBER: _ClassVar[int]
    STRANDED_GPUS_FIELD_NUMBER: _ClassVar[int]
    PLACER_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_JSON_FIELD_NUMBER: _ClassVar[int]
    SOLVER_IMPORT_MS_FIELD_NUMBER: _ClassVar[int]
    gang: str
    placed: bool
    pods: _containers.RepeatedCompositeFieldContainer[PodAssignment]
    domains_used: _containers.RepeatedCompositeFieldContainer[LevelValue]
    stranded_gpus: _containers.RepeatedCompositeFieldContainer[LevelValue]
    placer: str
    optimal: bool
    gap: float
    elapsed_ms: float
    reason: str
    explanation_json: str
    solver_import_ms: float
    def __init__(self, gang: _Optional[str] = ..., placed: _Optional[bool] = ..., pods: _Optional[_Iterable[_Union[PodAssignment, _Mapping]]] = ..., domains_used: _Optional[_Iterable[_Union[LevelValue, _Mapping]]] = ..., stranded_gpus: _Optional[_Iterable[_Union[LevelValue, _Mapping]]] = ..., placer: _Optional[str] = ..., optimal: _Optional[bool] = ..., gap: _Optional[float] = ..., elapsed_ms: _Optional[float] = ..., reason: _Optional[str] = ..., explanation_json: _Optional[str] = ..., solver_import_ms: _Optional[float] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("gang", "pods", "expires_in_s")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    gang: str
    pods: _containers.RepeatedCompositeFieldContainer[PodAssignment]
    expires_in_s: float
    def __init__(self, gang: _Optional[str] = ..., pods: _Optional[_Iterable[_Union[PodAssignment, _Mapping]]] = ..., expires_in_s: _Optional[float] = ...) -> None: ...

class PlaceRequest(_message.Message):
    __slots__ = ("gang", "placer", "time_limit_ms", "reserve", "reservation_ttl_s")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PLACER_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_TTL_S_FIELD_NUMBER: _ClassVar[int]
    gang: Gang
    placer: str
    time_limit_ms: float
    reserve: bool
    reservation_ttl_s: float
    def __init__(self, gang: _Optional[_Union[Gang, _Mapping]] = ..., placer: _Optional[str] = ..., time_limit_ms: _Optional[float] = ..., reserve: _Optional[bool] = ..., reservation_ttl_s: _Optional[float] = ...) -> None: ...

class PlaceResponse(_message.Message):
    __slots__ = ("placement", "reserved", "state_version")
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    placement: Placement
    reserved: bool
    state_version: int
    def __init__(self, placement: _Optional[_Union[Placement, _Mapping]] = ..., reserved: _Optional[bool] = ..., state_version: _Optional[int] = ...) -> None: ...

class PlaceBatchRequest(_message.Message):
    __slots__ = ("gangs", "placer", "time_limit_ms")
    GANGS_FIELD_NUMBER: _ClassVar[int]
    PLACER_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    gangs: _containers.RepeatedCompositeFieldContainer[Gang]
    placer: str
    time_limit_ms: float
    def __init__(self, gangs: _Optional[_Iterable[_Union[Gang, _Mapping]]] = ..., placer: _Optional[str] = ..., time_limit_ms: _Optional[float] = ...) -> None: ...

class PlaceBatchResponse(_message.Message):
    __slots__ = ("placements", "placed", "elapsed_ms", "state_version", "method", "optimal")
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    placed: int
    elapsed_ms: float
    state_version: int
    method: str
    optimal: bool
    def __init__(self, placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ..., placed: _Optional[int] = ..., elapsed_ms: _Optional[float] = ..., state_version: _Optional[int] = ..., method: _Optional[str] = ..., optimal: _Optional[bool] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("gang",)
    GANG_FIELD_NUMBER: _ClassVar[int]
    gang: str
    def __init__(self, gang: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released", "state_version")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    released: bool
    state_version: int
    def __init__(self, released: _Optional[bool] = ..., state_version: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("gang",)
    GANG_FIELD_NUMBER: _ClassVar[int]
    gang: Gang
    def __init__(self, gang: _Optional[_Union[Gang, _Mapping]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("fits", "reason", "explanation_json")
    FITS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_JSON_FIELD_NUMBER: _ClassVar[int]
    fits: bool
    reason: str
    explanation_json: str
    def __init__(self, fits: _Optional[bool] = ..., reason: _Optional[str] = ..., explanation_json: _Optional[str] = ...) -> None: ...

class PlanPreemptionRequest(_message.Message):
    __slots__ = ("gang", "placer")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PLACER_FIELD_NUMBER: _ClassVar[int]
    gang: Gang
    placer: str
    def __init__(self, gang: _Optional[_Union[Gang, _Mapping]] = ..., placer: _Optional[str] = ...) -> None: ...

class Victim(_message.Message):
    __slots__ = ("gang", "priority", "gpus", "nodes")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    gang: str
    priority: int
    gpus: int
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gang: _Optional[str] = ..., priority: _Optional[int] = ..., gpus: _Optional[int] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanPreemptionResponse(_message.Message):
    __slots__ = ("feasible", "victims", "placement", "evicted_gpus", "cost", "reason", "optimal", "elapsed_ms")
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    VICTIMS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    EVICTED_GPUS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    feasible: bool
    victims: _containers.RepeatedCompositeFieldContainer[Victim]
    placement: Placement
    evicted_gpus: int
    cost: float
    reason: str
    optimal: bool
    elapsed_ms: float
    def __init__(self, feasible: _Optional[bool] = ..., victims: _Optional[_Iterable[_Union[Victim, _Mapping]]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., evicted_gpus: _Optional[int] = ..., cost: _Optional[float] = ..., reason: _Optional[str] = ..., optimal: _Optional[bool] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("gang", "priority", "gpus", "cpu", "memory")
    GANG_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    gang: str
    priority: int
    gpus: int
    cpu: int
    memory: int
    def __init__(self, gang: _Optional[str] = ..., priority: _Optional[int] = ..., gpus: _Optional[int] = ..., cpu: _Optional[int] = ..., memory: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "topology", "gpus", "gpus_used", "gpu_type", "cpu", "cpu_used", "memory", "memory_used", "pods", "pods_used", "unschedulable", "labels", "allocations")
    class TopologyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPUS_USED_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    CPU_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    PODS_USED_FIELD_NUMBER: _ClassVar[int]
    UNSCHEDULABLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    topology: _containers.ScalarMap[str, str]
    gpus: int
    gpus_used: int
    gpu_type: str
    cpu: int
    cpu_used: int
    memory: int
    memory_used: int
    pods: int
    pods_used: int
    unschedulable: bool
    labels: _containers.ScalarMap[str, str]
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    def __init__(self, name: _Optional[str] = ..., topology: _Optional[_Mapping[str, str]] = ..., gpus: _Optional[int] = ..., gpus_used: _Optional[int] = ..., gpu_type: _Optional[str] = ..., cpu: _Optional[int] = ..., cpu_used: _Optional[int] = ..., memory: _Optional[int] = ..., memory_used: _Optional[int] = ..., pods: _Optional[int] = ..., pods_used: _Optional[int] = ..., unschedulable: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ...) -> None: ...

class UpsertNodesRequest(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class RemoveNodesRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class PodBinding(_message.Message):
    __slots__ = ("pod", "gang", "node", "gpus", "cpu", "memory", "priority")
    POD_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    pod: str
    gang: str
    node: str
    gpus: int
    cpu: int
    memory: int
    priority: int
    def __init__(self, pod: _Optional[str] = ..., gang: _Optional[str] = ..., node: _Optional[str] = ..., gpus: _Optional[int] = ..., cpu: _Optional[int] = ..., memory: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class BindPodsRequest(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[PodBinding]
    def __init__(self, pods: _Optional[_Iterable[_Union[PodBinding, _Mapping]]] = ...) -> None: ...

class UnbindPodsRequest(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pods: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterUpdateResponse(_message.Message):
    __slots__ = ("applied", "state_version")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    applied: int
    state_version: int
    def __init__(self, applied: _Optional[int] = ..., state_version: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("include_nodes",)
    INCLUDE_NODES_FIELD_NUMBER: _ClassVar[int]
    include_nodes: bool
    def __init__(self, include_nodes: _Optional[bool] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("levels", "nodes", "reservations", "version", "node_count", "total_gpus", "free_gpus", "stats_json")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_GPUS_FIELD_NUMBER: _ClassVar[int]
    FREE_GPUS_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    version: int
    node_count: int
    total_gpus: int
    free_gpus: int
    stats_json: str
    def __init__(self, levels: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., version: _Optional[int] = ..., node_count: _Optional[int] = ..., total_gpus: _Optional[int] = ..., free_gpus: _Optional[int] = ..., stats_json: _Optional[str] = ...) -> None: ...

class ExtenderRequest(_message.Message):
    __slots__ = ("verb", "args_json")
    VERB_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    verb: str
    args_json: bytes
    def __init__(self, verb: _Optional[str] = ..., args_json: _Optional[bytes] = ...) -> None: ...

class ExtenderResponse(_message.Message):
    __slots__ = ("http_status", "result_json")
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    http_status: int
    result_json: bytes
    def __init__(self, http_status: _Optional[int] = ..., result_json: _Optional[bytes] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PlanMemberRequest(_message.Message):
    __slots__ = ("pod_json", "nodes", "claimed")
    POD_JSON_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    pod_json: bytes
    nodes: _containers.RepeatedScalarFieldContainer[str]
    claimed: _containers.RepeatedCompositeFieldContainer[MemberClaim]
    def __init__(self, pod_json: _Optional[bytes] = ..., nodes: _Optional[_Iterable[str]] = ..., claimed: _Optional[_Iterable[_Union[MemberClaim, _Mapping]]] = ...) -> None: ...

class MemberClaim(_message.Message):
    __slots__ = ("pod_uid", "node")
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    pod_uid: str
    node: str
    def __init__(self, pod_uid: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class PlanMemberResponse(_message.Message):
    __slots__ = ("verdict", "nodes", "reason", "gang", "gang_size", "min_count", "scores", "gang_slots", "gang_pod_set", "plan_ttl_s")
    class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VERDICT_UNSPECIFIED: _ClassVar[PlanMemberResponse.Verdict]
        PLACE: _ClassVar[PlanMemberResponse.Verdict]
        NOT_NOW: _ClassVar[PlanMemberResponse.Verdict]
        NEVER: _ClassVar[PlanMemberResponse.Verdict]
        WAIT: _ClassVar[PlanMemberResponse.Verdict]
    VERDICT_UNSPECIFIED: PlanMemberResponse.Verdict
    PLACE: PlanMemberResponse.Verdict
    NOT_NOW: PlanMemberResponse.Verdict
    NEVER: PlanMemberResponse.Verdict
    WAIT: PlanMemberResponse.Verdict
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    GANG_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GANG_SLOTS_FIELD_NUMBER: _ClassVar[int]
    GANG_POD_SET_FIELD_NUMBER: _ClassVar[int]
    PLAN_TTL_S_FIELD_NUMBER: _ClassVar[int]
    verdict: PlanMemberResponse.Verdict
    nodes: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    gang: str
    gang_size: int
    min_count: int
    scores: _containers.ScalarMap[str, int]
    gang_slots: _containers.RepeatedCompositeFieldContainer[PodAssignment]
    gang_pod_set: PodSet
    plan_ttl_s: float
    def __init__(self, verdict: _Optional[_Union[PlanMemberResponse.Verdict, str]] = ..., nodes: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., gang: _Optional[str] = ..., gang_size: _Optional[int] = ..., min_count: _Optional[int] = ..., scores: _Optional[_Mapping[str, int]] = ..., gang_slots: _Optional[_Iterable[_Union[PodAssignment, _Mapping]]] = ..., gang_pod_set: _Optional[_Union[PodSet, _Mapping]] = ..., plan_ttl_s: _Optional[float] = ...) -> None: ...

class UnreserveRequest(_message.Message):
    __slots__ = ("pod_uid", "gang", "release_gang")
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    RELEASE_GANG_FIELD_NUMBER: _ClassVar[int]
    pod_uid: str
    gang: str
    release_gang: bool
    def __init__(self, pod_uid: _Optional[str] = ..., gang: _Optional[str] = ..., release_gang: _Optional[bool] = ...) -> None: ...

class PreemptMemberResponse(_message.Message):
    __slots__ = ("feasible", "reason", "victims", "victim_pods", "nodes", "optimal")
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VICTIMS_FIELD_NUMBER: _ClassVar[int]
    VICTIM_PODS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    feasible: bool
    reason: str
    victims: _containers.RepeatedCompositeFieldContainer[Victim]
    victim_pods: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    optimal: bool
    def __init__(self, feasible: _Optional[bool] = ..., reason: _Optional[str] = ..., victims: _Optional[_Iterable[_Union[Victim, _Mapping]]] = ..., victim_pods: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[str]] = ..., optimal: _Optional[bool] = ...) -> None: ...

class UnreserveResponse(_message.Message):
    __slots__ = ("released", "state_version")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    released: bool
    state_version: int
    def __init__(self, released: _Optional[bool] = ..., state_version: _Optional[int] = ...) -> None: ...
