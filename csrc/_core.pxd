# The contract of the native core (csrc/_core.pyx): its types, constants and the structs the
# kernels read. Python (engine/place/heuristic.py) validates and converts; the kernels get plain
# pointers into contiguous arrays, run without the GIL and never raise.
#
# _core.pyx includes this file (`include "_core.pxd"`): the module is built as
# gangplace.engine._core from csrc/, a path Cython does not search for the module's own .pxd.
#
# Layout (engine/model/cluster.py): nodes in topology order, every domain a contiguous node range,
# the domain ids of all levels in one id space (level l's ids are level_offset[l] .. level_offset[l+1]-1).
# Level n_levels is the node level. Arrays are parallel: one entry per node, per domain or per level.

ctypedef long long i64
ctypedef int i32
ctypedef unsigned char u8

cdef extern from *:
    """
    #define GANGPLACE_BIG (1LL << 60)
    """
    # "unbounded": more pods or domains than any cluster has; stays far from overflow when added
    const i64 BIG "GANGPLACE_BIG"

cdef enum:
    QTAB = 129  # quotient table size: nodes with up to 128 free GPUs skip the division
    MAXL = 14   # bottom-up best-fit keys live on the stack: deeper topologies fall back to top-down
    RIVALS = 4  # the rivals' candidates the kernel computes (Rivals below)
    CSORT = 4096  # sort_pos counts keys spanning fewer values than this (on the stack)


cdef struct Topology:
    # The cluster's tree, built once per cluster generation and read-only in the kernels.
    i32 n_levels                # topology levels above the nodes, top first
    i32 n_nodes                 # nodes, in topology order
    i32 n_domains               # domains of every level together
    const i32* node_domain      # [n_levels, n_nodes], row-major: each node's domain id at each level
    const i32* level_offset     # [n_levels + 1]: first domain id of each level, then n_domains
    const i32* domain_start     # [n_domains]: first node of each domain
    const i32* domain_end       # [n_domains]: one past its last node
    const i32* domain_parent    # [n_domains]: the enclosing domain one level up (-1 at the top level)


cdef struct NodeFree:
    # What each node has free now (the cluster's free arrays, minus pod sets already placed).
    const i32* gpus             # [n_nodes] free GPUs
    const i64* cpu              # [n_nodes] free CPU, millicores
    const i64* mem              # [n_nodes] free memory, bytes
    const i32* pods             # [n_nodes] free pod slots


cdef struct PodSetRequest:
    # One pod set of identical pods, as the kernel places it (scalars only: Python passes a dict).
    i64 gpus                    # GPUs per pod
    i64 cpu                     # CPU per pod, millicores
    i64 mem                     # memory per pod, bytes
    i64 count                   # pods wanted
    i64 min_count               # fewest pods accepted (= count unless elastic)
    i32 required_level          # every pod inside one domain of this level; -1: none
    i32 preferred_level         # levels below it are not counted in the objective; -1: count all
    i64 root_domain             # search inside this domain only; -1: the whole cluster
    bint bottom_up              # part (3): best fit from the node up (default); 0: top level first
    bint pod_room               # bottom-up with each domain measured in this pod set's pods first (podfit)
    bint rivals                 # also the rivals' candidates (Rivals below) when the answer is not proved


cdef struct PlaceOut:
    # The kernel's answer, written into caller-owned arrays.
    i64* counts                 # [n_nodes] pods placed per node (added to)
    i64* lower_bound            # [n_levels + 1] per level, the fewest domains any placement of the count needs
    i64* max_fit                # [n_levels + 1] per level, the most pods one domain holds now


cdef struct FitCache:
    # Phase 1-2 results of one request shape kept between calls (engine/place/heuristic.py owns
    # them, one per shape, on a cluster that tracks its writes: Cluster.track_writes). A lowest-
    # level domain whose version differs from the one its sums were computed at is recomputed;
    # the others' node caps (in Ctx.cap, which then points into the cache) and sums are reused.
    const i64* version          # [n_lowest] the cluster's per-lowest-level-domain write versions
    i64* seen                   # [n_lowest] the version each domain's entries below were computed at
    i64* csum                   # [n_lowest] sum of the node caps inside (uncapped)
    i64* gsum                   # [n_lowest] free GPUs of every node inside
    i64* xsum                   # [n_lowest] free GPUs of the ineligible nodes inside
    i64* cmax                   # [n_lowest] largest node cap inside
    i64 recomputed              # out: lowest-level domains recomputed by this call


cdef struct Ctx:
    # Per-call state of place_pod_set. *Items* unify domains and nodes: ids 0 .. n_domains-1 are
    # domains, n_domains + i is node i. All scratch lives in two malloc'ed blocks per call.
    i32 n_levels                # = Topology.n_levels
    i32 n_nodes                 # = Topology.n_nodes
    i32 n_domains               # = Topology.n_domains
    const i32* node_domain      # = Topology.node_domain
    const i32* level_offset     # = Topology.level_offset
    const i32* dstart           # = Topology.domain_start
    const i32* dend             # = Topology.domain_end
    const i32* dparent          # = Topology.domain_parent
    i64* cap                    # [n_items] pods of this pod set the item can hold (capped, rounded)
    i64* gfree                  # [n_domains] free GPUs of every node inside (eligible or not); gf() reads items
    const i32* fgpus            # = NodeFree.gpus: a node item's free GPUs
    i64* out                    # [n_nodes] pods placed per node (= PlaceOut.counts)
    i64* hist                   # [count + 2] scratch for top-j sums
    i32* used                   # [n_nodes + 1] nodes this call placed pods on, in placement order
    i64 n_used                  # entries of used
    i64* nmax                   # [n_domains + 1] largest node cap inside each domain (last: all)
    i64* nsum                   # [n_domains + 1] sum of node caps inside each domain (last: all)
    i64* xfree                  # [n_domains + 1] free GPUs on the ineligible nodes inside each domain
    i32* order                  # [n_items] scratch for sorting children
    i32* tmp                    # [n_items] scratch for merge sort / candidate lists
    i32 counted                 # items of level < counted are counted (preferred level + 1)
    i64 gpp                     # GPUs per pod
    bint bottom_up              # = PodSetRequest.bottom_up
    bint pod_room               # = PodSetRequest.pod_room


cdef struct Rivals:
    # The rivals' candidates (Kueue TAS's BestFit on capped rooms, KAI flat, KAI bin packing, Kueue
    # on its uncapped state: rival_candidates in _core.pyx), computed on the caps of Ctx after the
    # kernel's own descent. Each is written sparse: used nodes and pods on each, <= count entries.
    i64* nodes                  # [RIVALS, count] used node ids per candidate
    i64* take                   # [RIVALS, count] pods on each of those nodes
    i64* length                 # [RIVALS] entries per candidate; -1: no place found, not computed
    # scratch, n_items + 1 entries each (malloc'ed per call)
    i64* ids                    # item ids of a list being picked from
    i64* room                   # their capacities
    i64* grp                    # their parent domains (KAI's flat pick)
    i64* chosen                 # the pick's answer
    i64* key                    # sort keys
    i32* pos                    # positions being sorted
    i32* pos2                   # a second such list (bin packing's nodes inside its domain order)
    i32* tmp                    # merge sort scratch
    u8* mark                    # [n_domains + 1] parents already used (flat pick), cleared after use
