# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""gangplace native core: the request-path kernels (AOT Cython, no JIT warm-up).

Everything here works on flat arrays of the cluster layout described in engine/model/cluster.py:
nodes in topology order, every domain a contiguous node range, domain ids of all levels in one
id space. Kernels take typed memoryviews and scalars, run without the GIL and never raise; they
report through return codes and output arrays.

*Items* unify domains and nodes: item ids ``0 .. n_domains-1`` are domains, ids
``n_domains + i`` are nodes. Level ``n_levels`` is the node level.

Algorithm overview of ``place_pod_set`` (hierarchical best fit for one pod set of identical pods):
1. Fit: how many pods each eligible node holds (min over GPU, CPU, memory, pod slots), capped at
   the pod set's count and rounded down to a node-level slice unit.
2. Capacity: summed bottom-up into every domain; at a slice level rounded down to the slice size
   (a slice must sit inside one domain of its level), capped at the count.
3. Count: the pods to place, ``count`` or, for an elastic pod set, as many as fit (a multiple of
   the outermost slice size), never below ``min_count``.
4. Lower bounds: per level, the fewest domains whose capacities can cover the count (top-j sum),
   inside the best ``required`` domain when there is one. Used to prove optimality.
5. Descent from the root (or the chosen ``required`` domain): if a child holds the whole demand,
   take the child with the smallest lower-bound vector on the counted levels below it, then best
   fit. Otherwise take children largest-capacity first, filling them, until the remainder fits one
   child, which is chosen best fit: this uses the fewest children possible. Children below the
   ``preferred`` level are chosen by best fit alone. Best fit is bottom-up by default (part (3) of
   docs/placement.md): the child holding the tightest item at the deepest level where one item
   holds the demand (the node with the fewest free GPUs, else the fullest lowest-level domain, ...),
   then its ancestors' free GPUs upward (``best_inside``); with ``pod_room`` (objective podfit, the
   default) each domain is measured first by the pods of this pod set its nodes can take (``nsum``),
   then by its free GPUs (``bf_measure``); with ``bottom_up = 0`` the older order (the child with the
   fewest free GPUs).
6. Rivals (optional, ``request["rivals"]``): for one rigid pod set over the whole cluster whose
   answer does not meet the lower bounds, the rivals' candidates (Kueue TAS, KAI) on the same
   capacities (``rival_candidates``); the caller keeps the best by the objective.
"""
import numpy as np
cimport numpy as cnp
from libc.limits cimport LLONG_MAX
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memset

cnp.import_array()

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>
    #define GP_SLOTS 4
    typedef struct { void* p[GP_SLOTS]; size_t n[GP_SLOTS]; } gp_arena;
    static pthread_key_t gp_arena_key;
    static pthread_once_t gp_arena_once = PTHREAD_ONCE_INIT;
    static void gp_arena_free(void* a) {
        gp_arena* ar = (gp_arena*)a;
        for (int i = 0; i < GP_SLOTS; i++) free(ar->p[i]);
        free(ar);
    }
    static void gp_arena_init(void) { pthread_key_create(&gp_arena_key, gp_arena_free); }
    static void* gp_scratch(int slot, size_t bytes) {
        gp_arena* ar;
        pthread_once(&gp_arena_once, gp_arena_init);
        ar = (gp_arena*)pthread_getspecific(gp_arena_key);
        if (ar == NULL) {
            ar = (gp_arena*)calloc(1, sizeof(gp_arena));
            if (ar == NULL) return NULL;
            pthread_setspecific(gp_arena_key, ar);
        }
        if (ar->n[slot] < bytes) {
            free(ar->p[slot]);
            ar->p[slot] = malloc(bytes);
            ar->n[slot] = ar->p[slot] != NULL ? bytes : 0;
        }
        return ar->p[slot];
    }
    """
    # The kernels' large scratch blocks, one per slot per thread, kept between calls and freed when
    # the thread exits: a block of megabytes malloc'ed and freed on every call is served by mmap
    # or trimmed back to the system depending on the allocator's history, and then every page the
    # call touches faults again (up to ~270 us per call on a million GPUs). Uninitialised, like malloc.
    # Slots: 0 and 1 place_pod_set's i64 and i32 blocks, 2 and 3 rival_candidates'.
    void* gp_scratch(int slot, size_t bytes) noexcept nogil

# types, BIG, QTAB and the structs (Topology, NodeFree, PodSetRequest, PlaceOut, Ctx)
include "_core.pxd"


# ---------------------------------------------------------------------------- item helpers
cdef inline i64 gf(Ctx* c, i64 x) noexcept nogil:
    """Free GPUs of item x: a domain's sum (Ctx.gfree), a node's own (read from the free array:
    the node loop does not copy them)."""
    return c.gfree[x] if x < c.n_domains else c.fgpus[x - c.n_domains]


cdef inline i64 bf_measure(Ctx* c, i64 x) noexcept nogil:
    """Bottom-up best-fit measure of item x: a node's free GPUs; a domain's free GPUs, or with
    c.pod_room (podfit) the pods of this pod set its nodes can take, then its free GPUs (one integer:
    pods in the high bits; a domain's free GPUs stay below 2^32)."""
    if x >= c.n_domains:
        return c.fgpus[x - c.n_domains]
    if c.pod_room:
        return (c.nsum[x] << 32) + c.gfree[x]
    return c.gfree[x]


cdef inline i32 item_level(Ctx* c, i64 x) noexcept nogil:
    if x < 0:
        return -1
    if x >= c.n_domains:
        return c.n_levels
    cdef i32 l = 0
    while c.level_offset[l + 1] <= x:
        l += 1
    return l


cdef inline void node_range(Ctx* c, i64 x, i64* s, i64* e) noexcept nogil:
    if x < 0:
        s[0] = 0
        e[0] = c.n_nodes
    elif x >= c.n_domains:
        s[0] = x - c.n_domains
        e[0] = s[0] + 1
    else:
        s[0] = c.dstart[x]
        e[0] = c.dend[x]


cdef inline void items_in(Ctx* c, i64 x, i32 m, i64* lo, i64* hi) noexcept nogil:
    """Items of level m inside item x (x = -1: the whole cluster). Contiguous by the layout."""
    cdef i64 s, e
    node_range(c, x, &s, &e)
    if e <= s:
        lo[0] = 0
        hi[0] = 0
    elif m < c.n_levels:
        lo[0] = c.node_domain[<i64>m * c.n_nodes + s]
        hi[0] = c.node_domain[<i64>m * c.n_nodes + e - 1] + 1
    else:
        lo[0] = c.n_domains + s
        hi[0] = c.n_domains + e


cdef i64 min_cover(Ctx* c, i64 lo, i64 hi, i64 n) noexcept nogil:
    """Fewest items of [lo, hi) whose capacities sum to >= n (BIG if all together hold less)."""
    cdef i64 i, v, maxc = 0, total = 0, j = 0, acc = 0
    if n <= 0:
        return 0
    for i in range(lo, hi):
        v = c.cap[i]
        total += v
        if v > maxc:
            maxc = v
    if maxc >= n:
        return 1
    if total < n:
        return BIG
    if maxc == 1:  # common for whole-node pods: every item holds at most one pod
        return n
    # all caps < n <= count: counting sort on values, then take the largest first
    memset(c.hist, 0, (maxc + 1) * sizeof(i64))
    for i in range(lo, hi):
        c.hist[c.cap[i]] += 1
    v = maxc
    while v > 0:
        if c.hist[v]:
            if acc + c.hist[v] * v >= n:
                return j + (n - acc + v - 1) // v
            acc += c.hist[v] * v
            j += c.hist[v]
        v -= 1
    return BIG


# ---------------------------------------------------------------------------- choosing
cdef i64 pick_best_fit(Ctx* c, i32* cand, i64 k, i32 lvl, i64 n) noexcept nogil:
    """Among k candidate items of level lvl (each holding >= n), the one with the smallest
    lower-bound vector on the counted levels below lvl, then best fit: bottom-up (pick_bottom_up)
    or, with c.bottom_up = 0, the fewest free GPUs left in the candidate."""
    cdef i64 i, m, v, best_v, kk = k
    for m in range(lvl + 1, c.counted):
        if kk <= 1:
            break
        best_v = BIG + 1
        for i in range(kk):
            v = _cover_in(c, cand[i], <i32>m, n)
            c.tmp[i] = <i32>(v if v < 2147483647 else 2147483647)
            if v < best_v:
                best_v = v
        v = 0
        for i in range(kk):
            if c.tmp[i] == (best_v if best_v < 2147483647 else 2147483647):
                cand[v] = cand[i]
                v += 1
        kk = v
    cdef i64 best = cand[0]
    if c.bottom_up and kk > 1 and c.n_levels < MAXL:
        return pick_bottom_up(c, cand, kk, lvl, n)
    for i in range(1, kk):
        if gf(c, cand[i]) < gf(c, best):
            best = cand[i]
    return best


cdef inline i64 item_first_node(Ctx* c, i64 x) noexcept nogil:
    return x - c.n_domains if x >= c.n_domains else c.dstart[x]


cdef void best_inside(Ctx* c, i64 x, i32 lvl, i64 n, i64* key) noexcept nogil:
    """Bottom-up best-fit key of candidate x (level lvl) for n pods, written to key[0 .. n_levels+2).

    key[0] = -(the deepest level m > lvl where one item inside x holds all n pods; the node level
    is n_levels); then, over the items of that level inside x that hold n, the lexicographically
    smallest (free GPUs of the item, of its parent, ..., of its ancestor at level lvl + 1); then the
    free GPUs of x itself. Unused entries are 0. Smaller is better: the tightest node first, then
    the fullest lowest-level domain, and so on up (part (3) bottom-up, docs/placement.md). With
    c.pod_room a domain's entry is bf_measure's (its pods, then its free GPUs)."""
    cdef i32 m, a, j, L = c.n_levels
    cdef i64 lo, hi, i, s, d
    cdef i64 cur[MAXL + 2]
    cdef bint better
    for j in range(L + 2):
        key[j] = 0
    m = L
    while m > lvl:
        if _cover_in(c, x, m, n) == 1:
            break
        m -= 1
    if m <= lvl:  # nothing below x holds the n pods alone: compare x itself
        key[1] = bf_measure(c, x)
        return
    key[0] = -m
    items_in(c, x, m, &lo, &hi)
    key[1] = BIG
    for i in range(lo, hi):
        if c.cap[i] < n:
            continue
        s = item_first_node(c, i)
        j = 0
        cur[j] = bf_measure(c, i)
        j += 1
        a = m - 1
        d = i if i < c.n_domains else c.node_domain[<i64>a * c.n_nodes + s]
        while a > lvl:
            if i < c.n_domains or a < m - 1:
                d = c.dparent[d]  # the parents array: node_domain's rows are n_nodes apart (cache misses)
            cur[j] = bf_measure(c, d)
            j += 1
            a -= 1
        better = False
        for a in range(j):
            if cur[a] != key[1 + a]:
                better = cur[a] < key[1 + a]
                break
        if better:
            for a in range(j):
                key[1 + a] = cur[a]
    key[L + 1] = bf_measure(c, x)


cdef i64 pick_bottom_up(Ctx* c, i32* cand, i64 k, i32 lvl, i64 n) noexcept nogil:
    """Among k candidates of level lvl, the one with the smallest bottom-up key (best_inside);
    ties keep topology order."""
    cdef i64 best = cand[0], i, j
    cdef i64 kb[MAXL + 2]
    cdef i64 kc[MAXL + 2]
    cdef i32 width = c.n_levels + 2
    best_inside(c, best, lvl, n, kb)
    for i in range(1, k):
        best_inside(c, cand[i], lvl, n, kc)
        for j in range(width):
            if kc[j] != kb[j]:
                if kc[j] < kb[j]:
                    best = cand[i]
                    for j in range(width):
                        kb[j] = kc[j]
                break
    return best


cdef inline i64 _cover_in(Ctx* c, i64 x, i32 m, i64 n) noexcept nogil:
    """min_cover over the items of level m inside domain x (-1: everything). At the node level the
    per-domain largest node cap and cap sum answer the common cases without scanning the nodes."""
    cdef i64 lo, hi, k
    if m == c.n_levels and x < c.n_domains:
        if n <= 0:
            return 0
        k = x if x >= 0 else c.n_domains
        if c.nmax[k] >= n:
            return 1
        if c.nsum[k] < n:
            return BIG
        if c.nmax[k] == 1:
            return n
    items_in(c, x, m, &lo, &hi)
    return min_cover(c, lo, hi, n)


cdef inline bint _before(Ctx* c, i32 a, i32 b) noexcept nogil:
    """Sort order for filling: larger capacity first, then fewer free GPUs, then topology order."""
    if c.cap[a] != c.cap[b]:
        return c.cap[a] > c.cap[b]
    if gf(c, a) != gf(c, b):
        return gf(c, a) < gf(c, b)
    return a < b


cdef void sort_items(Ctx* c, i32* a, i64 k) noexcept nogil:
    """Bottom-up merge sort of item ids by _before (stable, O(k log k), no recursion)."""
    cdef i64 width = 1, i, left, mid, right, p, q, t
    cdef i32* src = a
    cdef i32* dst = c.tmp
    cdef i32* sw
    while width < k:
        i = 0
        while i < k:
            left = i
            mid = i + width if i + width < k else k
            right = i + 2 * width if i + 2 * width < k else k
            p = left
            q = mid
            t = left
            while p < mid and q < right:
                if _before(c, src[q], src[p]):
                    dst[t] = src[q]
                    q += 1
                else:
                    dst[t] = src[p]
                    p += 1
                t += 1
            while p < mid:
                dst[t] = src[p]
                p += 1
                t += 1
            while q < right:
                dst[t] = src[q]
                q += 1
                t += 1
            i += 2 * width
        sw = src
        src = dst
        dst = sw
        width *= 2
    if src != a:
        for i in range(k):
            a[i] = src[i]


cdef void place_in(Ctx* c, i64 x, i32 lvl, i64 n) noexcept nogil:
    """Place n pods inside item x of level lvl (cap[x] >= n is the caller's promise)."""
    cdef i64 lo, hi, i, k, remaining, ch, j, start
    cdef i32* cand
    if n <= 0:
        return
    if lvl == c.n_levels:
        c.out[x - c.n_domains] += n
        c.used[c.n_used] = <i32>(x - c.n_domains)
        c.n_used += 1
        return
    items_in(c, x, lvl + 1, &lo, &hi)
    # the candidate list lives in `order` at an offset private to this level of the recursion
    cand = c.order + lo
    k = 0
    for i in range(lo, hi):
        if c.cap[i] >= n:
            cand[k] = <i32>i
            k += 1
    if k > 0:
        ch = pick_best_fit(c, cand, k, lvl + 1, n)
        place_in(c, ch, lvl + 1, n)
        return
    # no single child holds n: fill the largest first, the last one best fit
    k = 0
    for i in range(lo, hi):
        if c.cap[i] > 0:
            cand[k] = <i32>i
            k += 1
    sort_items(c, cand, k)
    remaining = n
    start = 0
    while remaining > 0 and start < k:
        if c.cap[cand[start]] >= remaining:
            j = start
            while j < k and c.cap[cand[j]] >= remaining:
                j += 1
            ch = pick_best_fit(c, cand + start, j - start, lvl + 1, remaining)
            place_in(c, ch, lvl + 1, remaining)
            return
        ch = cand[start]
        remaining -= c.cap[ch]
        place_in(c, ch, lvl + 1, c.cap[ch])
        start += 1


# ---------------------------------------------------------------------------- entry points
cdef class KernelTopology:
    """The cluster's tree for the kernels: ``Topology`` pointing into the cluster's int32 arrays,
    which this object keeps alive. Build once per cluster generation (engine/place/heuristic.py
    caches it); the arrays must not be resized while it is in use."""

    cdef Topology c
    cdef readonly object node_domain    # int32[n_levels, n_nodes]
    cdef readonly object level_offset   # int32[n_levels + 1]
    cdef readonly object domain_start   # int32[n_domains]
    cdef readonly object domain_end     # int32[n_domains]
    cdef readonly object domain_parent  # int32[n_domains], derived here (phase 2 sums into parents)

    def __cinit__(self, node_domain, level_offset, domain_start, domain_end):
        cdef const i32[:, ::1] nd = node_domain
        cdef const i32[::1] lo = level_offset
        cdef const i32[::1] ds = domain_start
        cdef const i32[::1] de = domain_end
        self.node_domain, self.level_offset = node_domain, level_offset
        self.domain_start, self.domain_end = domain_start, domain_end
        parent = np.full(de.shape[0], -1, np.int32)
        for lv in range(1, lo.shape[0] - 1):
            starts = np.asarray(domain_start[lo[lv]:lo[lv + 1]])
            parent[lo[lv]:lo[lv + 1]] = np.asarray(node_domain)[lv - 1, starts]
        self.domain_parent = parent
        cdef const i32[::1] dp = parent
        self.c.domain_parent = &dp[0] if dp.shape[0] > 0 else NULL
        self.c.n_levels = <i32>lo.shape[0] - 1
        self.c.n_nodes = <i32>nd.shape[1]
        self.c.n_domains = lo[self.c.n_levels] if self.c.n_levels >= 0 else 0
        self.c.node_domain = &nd[0, 0] if nd.shape[0] > 0 and nd.shape[1] > 0 else NULL
        self.c.level_offset = &lo[0]
        self.c.domain_start = &ds[0] if ds.shape[0] > 0 else NULL
        self.c.domain_end = &de[0] if de.shape[0] > 0 else NULL


def place_pod_set(KernelTopology topology, const i32[::1] free_gpus, const i64[::1] free_cpu,
                  const i64[::1] free_mem, const i32[::1] free_pods, const u8[::1] eligible,
                  const i64[::1] unit, PodSetRequest request,
                  i64[::1] out_counts, i64[::1] out_lb, i64[::1] out_maxfit,
                  i64[:, ::1] rival_nodes=None, i64[:, ::1] rival_take=None, i64[::1] rival_length=None,
                  i64[::1] out_used=None, const i64[::1] dom_version=None, i64[::1] cache_cap=None,
                  i64[:, ::1] cache_dom=None, i64[::1] cache_stats=None):
    """Place one pod set of identical pods; see the module docstring for the phases.

    topology : KernelTopology of the cluster; free_* : per node (NodeFree in csrc/_core.pxd)
    eligible : u8[n_nodes] (schedulable and matching the selector)
    unit : i64[n_levels + 1], slice size at each level (1 = none), the node level last
    request : dict with the fields of PodSetRequest (csrc/_core.pxd)
    out_counts : i64[n_nodes], pods placed per node (added to)
    out_lb : i64[n_levels + 1], per level the fewest domains any placement of the count needs
    out_maxfit : i64[n_levels + 1], per level the most pods one domain holds now
    rival_nodes, rival_take : i64[RIVALS, >= count], rival_length : i64[RIVALS]: with request["rivals"],
        the rivals' candidates (Kueue BestFit on capped and on uncapped rooms, KAI flat, KAI bin
        packing; ``Rivals`` in csrc/_core.pxd)
        when the kernel's answer is not proved optimal by its bounds: used nodes (not sorted) and
        pods on each, length -1 where a candidate finds no place, -2 everywhere when none was
        computed. Computed for one rigid pod set without slices over the whole cluster only.
    out_used : i64[>= count + 1] or None: [0] the number k of nodes this call placed pods on,
        [1 .. k] their ids, increasing, so the caller need not scan every node for them
    dom_version, cache_cap, cache_dom : a FitCache (csrc/_core.pxd) for this request shape, kept by
        the caller between calls on one cluster: the cluster's write version per lowest-level
        domain i64[n_lowest], the node caps i64[n_domains + n_nodes + 1] and per lowest-level
        domain the version seen, cap sum, free GPUs, ineligible free GPUs, largest cap
        i64[5, n_lowest] (seen -1: never computed). Only domains whose version changed are
        recomputed; the caller guarantees the free arrays and ``eligible`` changed nowhere else,
        and that the shape (request resources, count, node unit, eligibility) is the cache's own.
    cache_stats : i64[>= 1] or None: [0] the lowest-level domains recomputed by this call
    Returns the number of pods placed, or -1 when fewer than min_count fit.
    """
    cdef Topology t = topology.c
    cdef FitCache fc
    cdef FitCache* fcp = NULL
    cdef i64 n_lowest
    cdef NodeFree f
    cdef PlaceOut o
    cdef Ctx c
    cdef Rivals rv
    cdef Rivals* rvp = NULL
    cdef i64 n, m
    t.n_nodes = <i32>free_gpus.shape[0]
    if request.rivals and rival_nodes is not None and rival_take is not None and rival_length is not None:
        if (rival_nodes.shape[0] < RIVALS or rival_take.shape[0] < RIVALS or rival_length.shape[0] < RIVALS
                or rival_nodes.shape[1] < request.count or rival_take.shape[1] < request.count
                or rival_nodes.shape[1] != rival_take.shape[1]):
            raise ValueError(f"rival arrays: [{RIVALS}, >= count] and [{RIVALS}]")
        rv.nodes = &rival_nodes[0, 0] if rival_nodes.shape[1] > 0 else NULL
        rv.take = &rival_take[0, 0] if rival_take.shape[1] > 0 else NULL
        rv.length = &rival_length[0]
        for m in range(RIVALS):
            rv.length[m] = -2  # not computed (no candidates needed); rival_candidates sets -1 or a length
        rvp = &rv
    cdef i64 n_items = t.n_domains + t.n_nodes
    f.gpus = &free_gpus[0] if t.n_nodes > 0 else NULL
    f.cpu = &free_cpu[0] if t.n_nodes > 0 else NULL
    f.mem = &free_mem[0] if t.n_nodes > 0 else NULL
    f.pods = &free_pods[0] if t.n_nodes > 0 else NULL
    o.counts = &out_counts[0] if t.n_nodes > 0 else NULL
    o.lower_bound = &out_lb[0]
    o.max_fit = &out_maxfit[0]
    if dom_version is not None or cache_cap is not None or cache_dom is not None:
        n_lowest = (t.level_offset[t.n_levels] - t.level_offset[t.n_levels - 1]) if t.n_levels > 0 else 0
        if (t.n_levels <= 0 or dom_version is None or cache_cap is None or cache_dom is None
                or dom_version.shape[0] != n_lowest or cache_cap.shape[0] != n_items + 1
                or cache_dom.shape[0] != 5 or cache_dom.shape[1] != n_lowest):
            raise ValueError("fit cache: dom_version [n_lowest], cache_cap [n_items + 1], cache_dom [5, n_lowest]")
        fc.version = &dom_version[0]
        fc.seen = &cache_dom[0, 0]
        fc.csum = &cache_dom[1, 0]
        fc.gsum = &cache_dom[2, 0]
        fc.xsum = &cache_dom[3, 0]
        fc.cmax = &cache_dom[4, 0]
        fc.recomputed = 0
        fcp = &fc
    # one block for the i64 scratch arrays and one for the i32 ones (per-thread, kept: gp_scratch); with
    # a fit cache the caps live in the cache, the block holds the rest
    if fcp != NULL:
        c.gfree = <i64*>gp_scratch(0, (4 * (t.n_domains + 1) + request.count + 2) * sizeof(i64))
        c.cap = &cache_cap[0]
        c.nmax = c.gfree + (t.n_domains + 1)
    else:
        c.cap = <i64*>gp_scratch(0, (2 * (n_items + 1) + 3 * (t.n_domains + 1) + request.count + 2) * sizeof(i64))
        c.gfree = c.cap + (n_items + 1) if c.cap != NULL else NULL
        c.nmax = c.gfree + (n_items + 1) if c.cap != NULL else NULL
    c.order = <i32*>gp_scratch(1, (3 * (n_items + 1)) * sizeof(i32))
    if c.gfree == NULL or c.order == NULL:
        raise MemoryError()
    c.nsum = c.nmax + (t.n_domains + 1)
    c.xfree = c.nsum + (t.n_domains + 1)
    c.hist = c.xfree + (t.n_domains + 1)
    c.tmp = c.order + (n_items + 1)
    c.used = c.tmp + (n_items + 1)
    with nogil:
        n = place_in_tree(&t, &f, &eligible[0] if t.n_nodes > 0 else NULL, &unit[0], request, &c, &o, rvp, fcp)
    if cache_stats is not None and cache_stats.shape[0] > 0:
        cache_stats[0] = fc.recomputed if fcp != NULL else -1
    if out_used is not None and n >= 0:
        if out_used.shape[0] < c.n_used + 1:
            raise ValueError("out_used: more nodes used than it holds")
        out_used[0] = c.n_used
        for m in range(c.n_used):  # sorted: topology order
            out_used[m + 1] = c.used[m]
            c.order[m] = <i32>m
        sort_pos(c.order, c.n_used, &out_used[1], False, c.tmp)
        for m in range(c.n_used):
            c.hist[m] = out_used[1 + c.order[m]]
        for m in range(c.n_used):
            out_used[m + 1] = c.hist[m]
    return n


cdef void fit_range_gpus(i64 s, i64 e, const u8* eligible, const i32* fgpus, const i32* fpods, i64 count,
                         i64 gpus, const i64* qtab, i64* node_cap, i64* out_sum, i64* out_gfree,
                         i64* out_xfree, i64* out_max) noexcept nogil:
    """node_fit_one for nodes s .. e-1 of a request of GPUs only (no CPU, memory or node-level
    slice), branch-free, into node_cap[i]; their caps' sum, free GPUs' sum (of all nodes and of the
    ineligible ones) and largest cap."""
    cdef i64 i, v, q, fg, csum = 0, gsum = 0, xsum = 0, cmax = 0
    for i in range(s, e):
        fg = fgpus[i]
        q = qtab[fg] if <unsigned long long>fg < QTAB else (fg // gpus if fg > 0 else 0)
        v = fpods[i]
        v = v if v < count else count
        v = v if v < q else q
        v = v if v > 0 else 0
        v = v if eligible[i] else 0
        node_cap[i] = v
        csum += v
        gsum += fg
        xsum += fg * (eligible[i] == 0)
        cmax = v if v > cmax else cmax
    out_sum[0] = csum
    out_gfree[0] = gsum
    out_xfree[0] = xsum
    out_max[0] = cmax


cdef void fit_domain(i64 s, i64 e, const u8* eligible, const i32* fgpus, const i64* fcpu, const i64* fmem,
                     const i32* fpods, i64 count, i64 gpus, i64 cpu, i64 mem, bint cpu_mul, bint mem_mul,
                     i64 node_unit, const i64* qtab, bint gpus_only, i64* node_cap, i64* out_sum,
                     i64* out_gfree, i64* out_xfree, i64* out_max) noexcept nogil:
    """Phase 1 for the nodes s .. e-1 of one lowest-level domain (the FitCache path): the same
    numbers as the uncached loop in place_in_tree."""
    cdef i64 i, v, csum = 0, gsum = 0, xsum = 0, cmax = 0
    if gpus_only:
        fit_range_gpus(s, e, eligible, fgpus, fpods, count, gpus, qtab, node_cap, out_sum, out_gfree, out_xfree,
                       out_max)
        return
    for i in range(s, e):
        v = node_fit_one(i, eligible, fgpus, fcpu, fmem, fpods, count, gpus, cpu, mem, cpu_mul, mem_mul,
                         node_unit, qtab)
        node_cap[i] = v
        csum += v
        gsum += fgpus[i]
        if not eligible[i]:
            xsum += fgpus[i]
        if v > cmax:
            cmax = v
    out_sum[0] = csum
    out_gfree[0] = gsum
    out_xfree[0] = xsum
    out_max[0] = cmax


cdef inline i64 node_fit_one(i64 i, const u8* eligible, const i32* fgpus, const i64* fcpu, const i64* fmem,
                             const i32* fpods, i64 count, i64 gpus, i64 cpu, i64 mem, bint cpu_mul, bint mem_mul,
                             i64 node_unit, const i64* qtab) noexcept nogil:
    """Phase 1 for node i: min(pod slots, count, free // need per resource), 0 when not eligible,
    rounded down to the node-level slice unit. A division costs tens of cycles and most nodes are
    either full or hold the whole count, so each resource is first compared with v * need (exact:
    overflow is ruled out by the *_mul flags) and divided only when it is the binding one; free
    GPUs are small numbers, their quotients come from a table (qtab)."""
    cdef i64 v, q, fg
    if not eligible[i]:
        return 0
    v = fpods[i]
    if v > count:
        v = count
    if gpus > 0:
        fg = fgpus[i]
        q = qtab[fg] if 0 <= fg < QTAB else fg // gpus
        if q < v:
            v = q
    if cpu > 0 and (not cpu_mul or v <= 0 or fcpu[i] < v * cpu):
        if fcpu[i] // cpu < v:
            v = fcpu[i] // cpu
    if mem > 0 and (not mem_mul or v <= 0 or fmem[i] < v * mem):
        if fmem[i] // mem < v:
            v = fmem[i] // mem
    if v < 0:
        v = 0
    if node_unit > 1:
        v -= v % node_unit
    return v


cdef i64 place_in_tree(const Topology* t, const NodeFree* f, const u8* eligible, const i64* unit,
                       PodSetRequest r, Ctx* c, PlaceOut* o, Rivals* rivals, FitCache* fc) noexcept nogil:
    """The body of place_pod_set over the structs; the scratch arrays of ``c`` (cap, gfree, nmax,
    nsum, xfree, hist, order, tmp, used) are set up by the caller (sizes in place_pod_set). With
    ``rivals``, also the rivals' candidates when the answer is not proved (rival_candidates). With
    ``fc``, phases 1-2 recompute only the lowest-level domains whose version changed (FitCache).
    Returns the pods placed or -1."""
    cdef i32 L = t.n_levels
    cdef i64 n_nodes = t.n_nodes
    cdef i64 n_domains = t.n_domains
    cdef i64 n_items = n_domains + n_nodes
    cdef i64 count = r.count, gpus = r.gpus, cpu = r.cpu, mem = r.mem
    cdef i32 required_level = r.required_level
    cdef i64 root_domain = r.root_domain
    cdef const i32* node_domain = t.node_domain
    cdef const i32* level_offset = t.level_offset
    cdef const i32* domain_start = t.domain_start
    cdef i64* out_lb = o.lower_bound
    cdef i64* out_maxfit = o.max_fit
    cdef i64 i, d, v, lo, hi, n, total, m, outer, best, k, rlvl, node_unit
    cdef i32 lvl
    cdef bint cpu_mul, mem_mul
    cdef i64 q, rem, csum, gsum, xsum, cmax, fg
    cdef bint gpus_only
    cdef i64 qtab[QTAB]
    # the O(n_nodes) loops below read through locals, not through the struct pointers: Python
    # extensions build with -fno-strict-aliasing, so every store into c.cap would otherwise reload
    # c.cap, f.gpus, ... inside the loops
    cdef const i32* fgpus = f.gpus
    cdef const i64* fcpu = f.cpu
    cdef const i64* fmem = f.mem
    cdef const i32* fpods = f.pods
    cdef i64* cap
    cdef i64* gfree
    cdef i64* nmax
    cdef i64* nsum
    c.n_levels = L
    c.n_nodes = <i32>n_nodes
    c.n_domains = <i32>n_domains
    c.node_domain = node_domain if L > 0 and n_nodes > 0 else NULL
    c.level_offset = level_offset
    c.dstart = domain_start if n_domains > 0 else NULL
    c.dend = t.domain_end if n_domains > 0 else NULL
    c.dparent = t.domain_parent if n_domains > 0 else NULL
    c.out = o.counts
    c.fgpus = f.gpus
    c.gpp = gpus
    c.bottom_up = r.bottom_up
    c.pod_room = r.pod_room and r.bottom_up
    c.counted = (r.preferred_level + 1) if r.preferred_level >= 0 else L + 1
    c.n_used = 0
    cap, gfree, nmax, nsum = c.cap, c.gfree, c.nmax, c.nsum
    # 1. node fit (node_fit_one): free GPUs per node are small numbers, their quotients by `gpus`
    # come from a table
    if gpus > 0:
        q = 0
        rem = 0
        for i in range(QTAB):
            qtab[i] = q
            rem += 1
            if rem == gpus:
                rem = 0
                q += 1
    cpu_mul = cpu > 0 and cpu <= LLONG_MAX // (count + 1)
    mem_mul = mem > 0 and mem <= LLONG_MAX // (count + 1)
    node_unit = unit[L]
    gpus_only = gpus > 0 and cpu <= 0 and mem <= 0 and node_unit <= 1
    # 2. capacity, bottom-up (and per domain the largest node cap and the node caps' sum). The
    # node fit (phase 1) runs inside the loop over the lowest-level domains, each a contiguous node
    # range, so their sums stay in registers (adding into cap[d] node by node chains every add
    # through memory: half the kernel's time on 131,072 nodes)
    for d in range(n_domains + 1):  # index n_domains: the whole cluster
        nmax[d] = 0
        nsum[d] = 0
        c.xfree[d] = 0
        if d < n_domains:
            cap[d] = 0
            gfree[d] = 0
    if L > 0:
        for d in range(level_offset[L - 1], level_offset[L]):
            if fc != NULL:
                k = d - level_offset[L - 1]
                v = fc.version[k]  # read before the free arrays: a write after it shows as a new version
                if fc.seen[k] == v:
                    cap[d] = fc.csum[k]
                    gfree[d] = fc.gsum[k]
                    c.xfree[d] = fc.xsum[k]
                    nsum[d] = fc.csum[k]
                    nmax[d] = fc.cmax[k]
                    continue
                fc.recomputed += 1
                fit_domain(domain_start[d], t.domain_end[d], eligible, fgpus, fcpu, fmem, fpods, count, gpus,
                           cpu, mem, cpu_mul, mem_mul, node_unit, qtab, gpus_only, cap + n_domains,
                           &fc.csum[k], &fc.gsum[k], &fc.xsum[k], &fc.cmax[k])
                fc.seen[k] = v
                cap[d] = fc.csum[k]
                gfree[d] = fc.gsum[k]
                c.xfree[d] = fc.xsum[k]
                nsum[d] = fc.csum[k]
                nmax[d] = fc.cmax[k]
                continue
            csum = 0
            gsum = 0
            xsum = 0
            cmax = 0
            if gpus_only:
                fit_range_gpus(domain_start[d], t.domain_end[d], eligible, fgpus, fpods, count, gpus, qtab,
                               cap + n_domains, &csum, &gsum, &xsum, &cmax)
                cap[d] = csum
                gfree[d] = gsum
                c.xfree[d] = xsum
                nsum[d] = csum
                nmax[d] = cmax
                continue
            for i in range(domain_start[d], t.domain_end[d]):
                v = node_fit_one(i, eligible, fgpus, fcpu, fmem, fpods, count, gpus, cpu, mem, cpu_mul, mem_mul,
                                 node_unit, qtab)
                # free GPUs of *every* node count toward best fit, eligible or not: the objective's
                # stranded GPUs (engine/place/objective.py) are summed over all nodes of a touched domain
                cap[n_domains + i] = v
                csum += v
                gsum += fgpus[i]
                if not eligible[i]:
                    xsum += fgpus[i]
                if v > cmax:
                    cmax = v
            cap[d] = csum
            gfree[d] = gsum
            c.xfree[d] = xsum
            nsum[d] = csum
            nmax[d] = cmax
        lvl = L - 1
        while lvl >= 0:
            k = unit[lvl]
            for d in range(level_offset[lvl], level_offset[lvl + 1]):
                if cap[d] > count:
                    cap[d] = count
                if k > 1:  # a division per domain otherwise (most levels have no slice)
                    cap[d] -= cap[d] % k
            for d in range(level_offset[lvl], level_offset[lvl + 1]):
                v = t.domain_parent[d] if lvl > 0 else n_domains
                if lvl > 0:
                    cap[v] += cap[d]
                    gfree[v] += gfree[d]
                    c.xfree[v] += c.xfree[d]
                nsum[v] += nsum[d]
                if nmax[d] > nmax[v]:
                    nmax[v] = nmax[d]
            lvl -= 1
    else:
        for i in range(n_nodes):
            v = node_fit_one(i, eligible, fgpus, fcpu, fmem, fpods, count, gpus, cpu, mem, cpu_mul, mem_mul,
                             node_unit, qtab)
            cap[n_domains + i] = v
            nsum[n_domains] += v
            if v > nmax[n_domains]:
                nmax[n_domains] = v
    # where the search starts
    rlvl = item_level(c, root_domain)
    for m in range(L + 1):
        out_maxfit[m] = 0
        if m == L and root_domain < n_domains:
            out_maxfit[m] = c.nmax[root_domain if root_domain >= 0 else n_domains]
            continue
        items_in(c, root_domain, <i32>m, &lo, &hi)
        for i in range(lo, hi):
            if c.cap[i] > out_maxfit[m]:
                out_maxfit[m] = c.cap[i]
    outer = 1
    for m in range(L + 1):
        if unit[m] > outer:
            outer = unit[m]
    # 3. how many pods
    if required_level > rlvl:
        total = out_maxfit[required_level]
    else:
        required_level = -1
        total = 0
        items_in(c, root_domain, <i32>(rlvl + 1), &lo, &hi)
        for i in range(lo, hi):
            total += c.cap[i]
    n = count if total >= count else total - total % outer
    if n < r.min_count or (n == 0 and count > 0 and r.min_count > 0):
        for m in range(L + 1):
            out_lb[m] = BIG
        return -1
    # 4. lower bounds
    for m in range(L + 1):
        if m <= rlvl or (required_level >= 0 and m <= required_level):
            out_lb[m] = 1 if n > 0 else 0
        elif required_level >= 0:
            best = BIG
            items_in(c, root_domain, required_level, &lo, &hi)
            for d in range(lo, hi):
                if c.cap[d] >= n:
                    v = _cover_in(c, d, <i32>m, n)
                    if v < best:
                        best = v
            out_lb[m] = best
        else:
            out_lb[m] = _cover_in(c, root_domain, <i32>m, n)
    # 5. descent
    if required_level >= 0:
        items_in(c, root_domain, required_level, &lo, &hi)
        k = 0
        for d in range(lo, hi):
            if c.cap[d] >= n:
                c.order[k] = <i32>d
                k += 1
        # candidate list lives at the front of `order`; the descent below uses offsets of
        # deeper levels, which start past the required level's ids, so copy it out first
        best = pick_best_fit(c, c.order, k, required_level, n) if k > 0 else -1
        if best >= 0:
            place_in(c, best, required_level, n)
    else:
        place_in(c, root_domain, rlvl, n)
    # 6. the rivals' candidates, for one rigid pod set over the whole cluster not proved optimal
    if rivals != NULL and n == count and count > 0 and r.min_count == count and root_domain < 0:
        k = 1
        for m in range(L + 1):
            if unit[m] != 1:
                k = 0
        if k:
            memset(c.tmp, 0, (n_domains + 1) * sizeof(i32))
            if not answer_proved(c, out_lb):
                rival_candidates(c, &r, eligible, fgpus, rivals)
    return n



# ---------------------------------------------------------------------------- the rivals' candidates
# The rivals' own candidates as extra starts of the heuristic (engine/place/largest_first.py is
# the numpy reference they are tested against, tests/engine/place/test_rivals_native.py): Kueue
# TAS's BestFit (the tightest domain at the lowest level that holds the gang, then the children
# of the chosen domains pooled level by level, most room first, the last one best fit), KAI's
# flat variant (straight to the chosen domain's lowest-level domains) and KAI's bin packing
# (lowest-level domains with more free GPUs first, their nodes fullest first). They read the
# caps of the kernel's phase 2 (Ctx.cap) and cost O(nodes and domains they look at) each.

cdef void sort_pos(i32* p, i64 k, const i64* key, bint desc, i32* tmp) noexcept nogil:
    """Stable sort of positions p[0 .. k) by key[p[i]], ascending (desc: descending): a counting
    sort when the keys span fewer than CSORT values (rooms, free GPUs: the common case), else a
    bottom-up merge sort."""
    cdef i64 width = 1, i, mid, right, a, b, t, lo, hi
    cdef i32* src = p
    cdef i32* dst = tmp
    cdef i32* sw
    cdef bint second
    cdef i32 cnt[CSORT + 2]
    if k < 2:
        return
    lo = key[p[0]]
    hi = lo
    for i in range(1, k):
        t = key[p[i]]
        if t < lo:
            lo = t
        if t > hi:
            hi = t
    if k > 16 and hi - lo < CSORT and hi - lo <= 8 * k:
        memset(cnt, 0, (hi - lo + 2) * sizeof(i32))
        for i in range(k):
            b = (hi - key[p[i]]) if desc else (key[p[i]] - lo)
            cnt[b + 1] += 1
        for i in range(hi - lo + 1):
            cnt[i + 1] += cnt[i]
        for i in range(k):
            b = (hi - key[p[i]]) if desc else (key[p[i]] - lo)
            tmp[cnt[b]] = p[i]
            cnt[b] += 1
        for i in range(k):
            p[i] = tmp[i]
        return
    while width < k:
        i = 0
        while i < k:
            mid = i + width if i + width < k else k
            right = i + 2 * width if i + 2 * width < k else k
            a = i
            b = mid
            t = i
            while a < mid and b < right:
                second = key[src[b]] > key[src[a]] if desc else key[src[b]] < key[src[a]]
                if second:
                    dst[t] = src[b]
                    b += 1
                else:
                    dst[t] = src[a]
                    a += 1
                t += 1
            while a < mid:
                dst[t] = src[a]
                a += 1
                t += 1
            while b < right:
                dst[t] = src[b]
                b += 1
                t += 1
            i += 2 * width
        sw = src
        src = dst
        dst = sw
        width *= 2
    if src != p:
        for i in range(k):
            p[i] = src[i]


cdef i64 rv_pick(Rivals* s, i64 k, i64 count, bint grouped) noexcept nogil:
    """largest_first._pick over s.ids / s.room [0 .. k) (s.grp: each one's parent when grouped):
    most room first until count is covered, the last one the tightest that holds the rest (with
    grouped, from a parent already used when one there does). Writes s.chosen; returns its
    length, or -1 when there is not enough room."""
    cdef i64 j, kk, mk, rest, last, best
    cdef i32* p = s.pos
    if k <= 0 or count <= 0:
        return -1
    for j in range(k):
        p[j] = <i32>j
    sort_pos(p, k, s.room, True, s.tmp)
    rest = count
    kk = 0
    while kk < k and s.room[p[kk]] < rest:
        rest -= s.room[p[kk]]
        kk += 1
    if kk == k or (kk > 0 and s.room[p[kk - 1]] <= 0):
        return -1
    mk = kk
    while mk < k and s.room[p[mk]] >= rest:
        mk += 1
    last = mk - 1  # the tightest holder, the first of equals, not before kk
    while last > kk and s.room[p[last - 1]] == s.room[p[mk - 1]]:
        last -= 1
    if grouped and kk > 0:
        for j in range(kk):
            s.mark[s.grp[p[j]] + 1] = 1
        best = -1
        for j in range(kk, mk):
            if s.mark[s.grp[p[j]] + 1] and (best < 0 or s.room[p[j]] < s.room[p[best]]):
                best = j
        for j in range(kk):
            s.mark[s.grp[p[j]] + 1] = 0
        if best >= 0:
            last = best
    for j in range(kk):
        s.chosen[j] = s.ids[p[j]]
    s.chosen[kk] = s.ids[p[last]]
    return kk + 1


cdef i64 rv_take(Rivals* s, Ctx* c, i64 k, i64 count, i64* out_nodes, i64* out_take) noexcept nogil:
    """largest_first._take: pods onto the nodes s.ids [0 .. k) as rv_pick chooses them (room: the
    node's cap), most room first then node id, min(cap, rest) each. Returns the nodes used or -1."""
    cdef i64 j, m, q, t, rest
    for j in range(k):
        s.room[j] = c.cap[c.n_domains + s.ids[j]]
    m = rv_pick(s, k, count, False)
    if m < 0:
        return -1
    for j in range(m):
        s.key[j] = s.chosen[j]
        s.room[j] = c.cap[c.n_domains + s.chosen[j]]
        s.pos[j] = <i32>j
    sort_pos(s.pos, m, s.key, False, s.tmp)
    sort_pos(s.pos, m, s.room, True, s.tmp)
    rest = count
    for j in range(m):
        q = s.pos[j]
        t = s.room[q] if s.room[q] < rest else rest
        if t <= 0:
            return -1
        out_nodes[j] = s.chosen[q]
        out_take[j] = t
        rest -= t
    return m if rest == 0 else -1


cdef inline i64 rv_room(Ctx* c, i64 d, bint exact) noexcept nogil:
    """Pods domain d holds: its cap (capped at the count) or, exact, the sum of its nodes' caps
    (Kueue's domain state: the same whenever the candidates run, as no node then holds more
    than the count, except that the sum is not capped)."""
    return c.nsum[d] if exact else c.cap[d]


cdef i64 rv_children(Rivals* s, Ctx* c, i64 nch, i32 lv, bint grouped, bint exact) noexcept nogil:
    """The domains of level lv inside the chosen ones (s.chosen [0 .. nch)) into s.ids / s.room
    (their room, rv_room) and, with grouped, s.grp (their parents). Returns how many. In id order;
    exact (Kueue's own pooling): the chosen domains' children in the chosen domains' order."""
    cdef i64 j, i, k = 0, lo, hi
    for j in range(nch):
        s.pos[j] = <i32>j
    if not exact:
        sort_pos(s.pos, nch, s.chosen, False, s.tmp)
    for j in range(nch):
        items_in(c, s.chosen[s.pos[j]], lv, &lo, &hi)
        for i in range(lo, hi):
            s.ids[k] = i
            s.room[k] = rv_room(c, i, exact)
            if grouped:
                s.grp[k] = c.node_domain[<i64>(lv - 1) * c.n_nodes + c.dstart[i]] if lv > 0 else -1
            k += 1
    return k


cdef i64 rv_largest_first(Rivals* s, Ctx* c, PodSetRequest* r, bint flat, bint exact, i64* out_nodes,
                          i64* out_take) noexcept nogil:
    """largest_first.largest_first_counts: Kueue's pooled descent (flat = 0) or KAI's (flat = 1);
    exact: domains compared by their uncapped room (rv_room), as Kueue's own state, and children
    pooled in the chosen domains' order (rv_children)."""
    cdef i32 L = c.n_levels, lv, level = -1, top
    cdef i64 count = r.count, d, best, nch = 0, k, j, i, lo, hi
    if L == 0:
        for j in range(c.n_nodes):
            s.ids[j] = j
        return rv_take(s, c, c.n_nodes, count, out_nodes, out_take)
    top = r.required_level if r.required_level > 0 else 0
    lv = L - 1
    while lv >= top and nch == 0:  # 1. the lowest level where one domain holds it: the tightest
        best = -1
        for d in range(c.level_offset[lv], c.level_offset[lv + 1]):
            if c.cap[d] >= count and (best < 0 or rv_room(c, d, exact) < rv_room(c, best, exact)):
                best = d
        if best >= 0:
            s.chosen[0] = best
            nch = 1
            level = lv
        lv -= 1
    if nch == 0:  # 2. several top-level domains (KAI: all of them, picked among their lowest domains)
        if r.required_level >= 0:
            return -1
        lo = c.level_offset[0]
        hi = c.level_offset[1]
        for d in range(lo, hi):
            s.ids[d - lo] = d
            s.room[d - lo] = rv_room(c, d, exact)
            s.chosen[d - lo] = d
        nch = hi - lo if flat else rv_pick(s, hi - lo, count, False)
        if nch < 0:
            return -1
        level = 0
    if flat and level < L - 1:
        k = rv_children(s, c, nch, L - 1, True, exact)
        nch = rv_pick(s, k, count, True)
        if nch < 0:
            return -1
        level = L - 1
    for lv in range(level + 1, L):  # 3. the descent, pooled per level
        k = rv_children(s, c, nch, lv, False, exact)
        nch = rv_pick(s, k, count, False)
        if nch < 0:
            return -1
    k = 0
    for j in range(nch):  # the chosen lowest-level domains' nodes, in the pick's order
        d = s.chosen[j]
        for i in range(c.dstart[d], c.dend[d]):
            s.ids[k] = i
            k += 1
    return rv_take(s, c, k, count, out_nodes, out_take)


cdef inline i64 rv_efree(Ctx* c, i64 d) noexcept nogil:
    """Free GPUs on the eligible nodes of domain d."""
    return c.gfree[d] - c.xfree[d]


cdef i64 rv_binpack(Rivals* s, Ctx* c, PodSetRequest* r, const u8* eligible, const i32* fgpus,
                    i64* out_nodes, i64* out_take) noexcept nogil:
    """largest_first.binpack_counts: KAI's topology plugin with bin packing."""
    cdef i32 L = c.n_levels, lv, top
    cdef i64 count = r.count, d, f, bestf = 0, region = -1, lo, hi, s0, e0, k, j, g, q, nn, i, t, m = 0
    cdef i64 rest = count
    top = r.required_level if r.required_level > 0 else 0
    lv = L - 1
    while lv >= top and region < 0:  # the lowest level holding the gang: the fewest free GPUs
        for d in range(c.level_offset[lv], c.level_offset[lv + 1]):
            if c.cap[d] >= count:
                f = rv_efree(c, d)
                if f >= count * r.gpus and (region < 0 or f < bestf):
                    region = d
                    bestf = f
        lv -= 1
    if region < 0 and r.required_level >= 0:
        return -1
    node_range(c, region, &s0, &e0)
    if L == 0:
        for i in range(s0, e0):
            t = c.cap[c.n_domains + i]
            if eligible[i] and t > 0 and rest > 0:
                t = t if t < rest else rest
                out_nodes[m] = i
                out_take[m] = t
                m += 1
                rest -= t
        return m if rest == 0 else -1
    # the region's lowest-level domains, most eligible free GPUs first (ties in id order); the
    # nodes of domains tied on that, together, fewest free GPUs first (ties in id order)
    items_in(c, region, L - 1, &lo, &hi)
    k = hi - lo
    for j in range(k):
        s.ids[j] = lo + j
        s.key[j] = rv_efree(c, lo + j)
        s.pos[j] = <i32>j
    sort_pos(s.pos, k, s.key, True, s.tmp)
    j = 0
    while j < k and rest > 0:
        g = j
        nn = 0
        while g < k and s.key[s.pos[g]] == s.key[s.pos[j]]:
            d = s.ids[s.pos[g]]
            for i in range(c.dstart[d], c.dend[d]):
                if eligible[i] and c.cap[c.n_domains + i] > 0:
                    s.room[nn] = i
                    s.grp[nn] = fgpus[i]
                    s.pos2[nn] = <i32>nn
                    nn += 1
            g += 1
        sort_pos(s.pos2, nn, s.grp, False, s.tmp)
        for q in range(nn):
            if rest == 0:
                break
            i = s.room[s.pos2[q]]
            t = c.cap[c.n_domains + i]
            t = t if t < rest else rest
            out_nodes[m] = i
            out_take[m] = t
            m += 1
            rest -= t
        j = g
    return m if rest == 0 else -1


cdef bint answer_proved(Ctx* c, const i64* lb) noexcept nogil:
    """Parts (1)-(2) of the kernel's own answer proved by its bounds: on every counted level no
    more domains (nodes at the node level) than the lower bound (c.tmp is free after the descent)."""
    cdef i32 m
    cdef i64 j, d, used
    cdef i32 top = c.counted if c.counted < c.n_levels else c.n_levels
    if c.counted > c.n_levels and c.n_used > lb[c.n_levels]:
        return False
    for m in range(top):
        used = 0
        for j in range(c.n_used):
            d = c.node_domain[<i64>m * c.n_nodes + c.used[j]]
            if c.tmp[d] == 0:
                c.tmp[d] = 1
                used += 1
        for j in range(c.n_used):
            c.tmp[c.node_domain[<i64>m * c.n_nodes + c.used[j]]] = 0
        if used > lb[m]:
            return False
    return True


cdef void rival_candidates(Ctx* c, PodSetRequest* r, const u8* eligible, const i32* fgpus,
                           Rivals* s) noexcept nogil:
    """The candidates into s.nodes / s.take / s.length (RIVALS rows of r.count entries): Kueue
    on capped rooms, KAI flat, KAI bin packing, Kueue on its own uncapped state. On a failed
    allocation none is computed (length -1): the kernel's own answer stands."""
    cdef i64 n_items = <i64>c.n_domains + c.n_nodes + 1
    cdef i64 count = r.count
    cdef i32 j
    for j in range(RIVALS):
        s.length[j] = -1
    s.ids = <i64*>gp_scratch(2, 5 * n_items * sizeof(i64))
    s.pos = <i32*>gp_scratch(3, 3 * n_items * sizeof(i32))
    s.mark = <u8*>calloc(c.n_domains + 2, sizeof(u8))
    if s.ids != NULL and s.pos != NULL and s.mark != NULL:
        s.room = s.ids + n_items
        s.grp = s.room + n_items
        s.chosen = s.grp + n_items
        s.key = s.chosen + n_items
        s.pos2 = s.pos + n_items
        s.tmp = s.pos2 + n_items
        s.length[0] = rv_largest_first(s, c, r, False, False, s.nodes, s.take)
        s.length[1] = rv_largest_first(s, c, r, True, False, s.nodes + count, s.take + count)
        s.length[2] = rv_binpack(s, c, r, eligible, fgpus, s.nodes + 2 * count, s.take + 2 * count)
        s.length[3] = rv_largest_first(s, c, r, False, True, s.nodes + 3 * count, s.take + 3 * count)
    free(s.mark)



cdef void touched_sums(const i32* node_domain, i64 n_nodes, const i32* dstart, const i32* dend, i32 L,
                       const i32* free_gpus, const i64* nodes, const i64* taken, i64 k, i64 unit, i64 cap,
                       i64* domains, i64* stranded, i64* room) noexcept nogil:
    """Per level (then the nodes, index L) for used nodes (increasing) taking ``taken`` GPUs each: the
    domains touched, the free GPUs left in them and, with unit > 0, their pod room before placement
    (per node min(free GPUs // unit, cap); room[L] = 0; room is not touched, and may be NULL, when
    unit <= 0). The one pass evaluate_nodes and objective_key share (node_domain: [L, n_nodes]
    row-major)."""
    cdef i32 j
    cdef i64 i, d, x, prev, f
    cdef bint with_room = unit > 0
    domains[L] = k
    stranded[L] = 0
    if with_room:
        room[L] = 0
    for i in range(k):
        stranded[L] += free_gpus[nodes[i]] - taken[i]
    for j in range(L):
        prev = -1
        domains[j] = 0
        stranded[j] = 0
        if with_room:
            room[j] = 0
        for i in range(k):
            d = node_domain[<i64>j * n_nodes + nodes[i]]
            if d != prev:
                domains[j] += 1
                for x in range(dstart[d], dend[d]):
                    f = free_gpus[x]
                    stranded[j] += f
                    if with_room and f > 0:
                        room[j] += f // unit if f // unit < cap else cap
                prev = d
            stranded[j] -= taken[i]


cdef void objective_key(const Topology* t, const i32* free_gpus, const i64* nodes, const i64* taken, i64 k,
                        i32 counted, i32 mode, i64 unit, i64 cap, i64* key) noexcept nogil:
    """Parts (2)-(3) of engine/place/objective.py's key for used nodes (increasing) taking ``taken``
    GPUs each: domains per counted level (the node count last), then the stranded GPUs top-down
    (mode 0), bottom-up (nodes, lowest level, ..., top: mode 1) or bottom-up with each level's pod
    room (per node min(free GPUs // unit, cap), before placement) before its GPUs (podfit: mode 2).
    key has 3 * (n_levels + 1) entries."""
    cdef i32 L = t.n_levels, j
    cdef i64 x
    cdef i64 stranded[MAXL + 2]
    cdef i64 domains[MAXL + 2]
    cdef i64 room[MAXL + 2]
    touched_sums(t.node_domain, t.n_nodes, t.domain_start, t.domain_end, L, free_gpus, nodes, taken, k,
                 unit if mode == 2 else 0, cap, domains, stranded, room)
    x = 0
    for j in range(counted if counted < L + 1 else L + 1):
        key[x] = domains[j]
        x += 1
    if mode == 0:
        for j in range(L + 1):
            key[x] = stranded[j]
            x += 1
    else:
        key[x] = stranded[L]
        x += 1
        for j in range(L - 1, -1, -1):
            if mode == 2:
                key[x] = room[j]
                x += 1
            key[x] = stranded[j]
            x += 1
    while x < 3 * (L + 1):
        key[x] = 0
        x += 1


def best_rival(KernelTopology topology, const i32[::1] free_gpus, i64 gpus_per_pod, i64 pods, i32 counted, i32 mode,
               const i64[::1] used, const i64[::1] counts, const i64[:, ::1] rival_nodes,
               const i64[:, ::1] rival_take, const i64[::1] rival_length, i64[::1] out_nodes, i64[::1] out_take):
    """The rivals' candidate (place_pod_set's rival_* arrays) whose objective key is strictly
    smaller than the kernel's answer's (``used``: its nodes, increasing; ``counts``: pods per node),
    the first such of the smallest; -1 when none beats it. Its nodes (increasing) and pods per node
    go to out_nodes / out_take (rival_length[i] entries). Every candidate places the same count, so
    part (1) ties; parts (2)-(3) as engine/place/objective.py (its tests check them equal); ``mode``:
    0 topdown, 1 bottomup, 2 podfit (its pod room counted in pods of gpus_per_pod GPUs, at most ``pods``
    per node: engine/place/objective.py pod_unit of the one pod set)."""
    cdef Topology t = topology.c
    cdef i32 L = t.n_levels, w = 3 * (t.n_levels + 1)
    cdef i64 j, i, x, k, best = -1, m, kmax = out_nodes.shape[0], unit = gpus_per_pod if gpus_per_pod > 0 else 1
    cdef i64 kb[3 * (MAXL + 2)]
    cdef i64 kc[3 * (MAXL + 2)]
    cdef i64* nodes
    cdef i64* taken
    cdef i32* pos
    t.n_nodes = <i32>free_gpus.shape[0]
    if L > MAXL:
        return -1
    k = used.shape[0]
    if rival_nodes.shape[1] > kmax or out_take.shape[0] < kmax:
        raise ValueError("out_nodes / out_take: at least count entries")
    nodes = <i64*>malloc((2 * kmax + k + 1) * sizeof(i64))
    pos = <i32*>malloc((2 * kmax + 2) * sizeof(i32))
    if nodes == NULL or pos == NULL:
        free(nodes); free(pos)
        raise MemoryError()
    taken = nodes + kmax
    with nogil:
        for i in range(k):
            taken[i] = counts[used[i]] * gpus_per_pod
        objective_key(&t, &free_gpus[0], &used[0] if k > 0 else NULL, taken, k, counted, mode, unit, pods, kb)
        for j in range(rival_length.shape[0]):
            m = rival_length[j]
            if m <= 0 or m > kmax:
                continue
            for i in range(m):
                pos[i] = <i32>i
            sort_pos(pos, m, &rival_nodes[j, 0], False, pos + kmax + 1)
            for i in range(m):
                nodes[i] = rival_nodes[j, pos[i]]
                taken[i] = rival_take[j, pos[i]] * gpus_per_pod
            objective_key(&t, &free_gpus[0], nodes, taken, m, counted, mode, unit, pods, kc)
            for i in range(w):
                if kc[i] != kb[i]:
                    if kc[i] < kb[i]:
                        best = j
                        for x in range(w):
                            kb[x] = kc[x]
                        for x in range(m):
                            out_nodes[x] = nodes[x]
                            out_take[x] = rival_take[j, pos[x]]
                    break
    free(nodes)
    free(pos)
    return best

N_RIVALS = RIVALS  # rows of the rival arrays (engine/place/heuristic.py rival_arrays)


def evaluate_nodes(const i64[::1] nodes, const i64[::1] taken, const i32[::1] free_gpus,
                   const i32[:, ::1] node_domain, const i32[::1] domain_start, const i32[::1] domain_end,
                   i64[::1] out_domains, i64[::1] out_stranded, i64 unit=0, i64[::1] out_room=None, i64 cap=0):
    """Domains touched and free GPUs left in them, per level then nodes, from the used nodes only
    (tests/engine/place/test_heuristic.py checks it against a full pass in Python).

    nodes : i64[k] used node ids, increasing (topology order); taken : i64[k] GPUs the placement
    takes on each; free_gpus : i32[n_nodes] free GPUs *before* the placement.
    Free GPUs left in a touched domain = its free GPUs before minus what the placement takes in it.
    unit > 0: out_room[level] = the pods of ``unit`` GPUs the touched domains of the level could take
    before the placement (per node, min(its free GPUs // unit, cap)), the podfit objective's ``pod_room``.
    """
    cdef i64 k = nodes.shape[0]
    cdef i32 L = <i32>node_domain.shape[0]
    if unit > 0 and (out_room is None or out_room.shape[0] < L + 1 or cap < 1):
        raise ValueError("with unit: out_room (one entry per level and one for the nodes) and cap >= 1")
    cdef i64* room = &out_room[0] if unit > 0 else NULL
    with nogil:
        touched_sums(&node_domain[0, 0] if L > 0 else NULL, node_domain.shape[1], &domain_start[0] if L > 0 else NULL,
                     &domain_end[0] if L > 0 else NULL, L, &free_gpus[0] if free_gpus.shape[0] else NULL,
                     &nodes[0] if k > 0 else NULL, &taken[0] if k > 0 else NULL, k, unit, cap,
                     &out_domains[0], &out_stranded[0], room)
    return 0


def nonzero_nodes(const i64[::1] counts):
    """i64[k]: the ids of the nodes with counts > 0, increasing (numpy's flatnonzero costs several
    microseconds more on thousands of nodes, which matters on the request path)."""
    cdef i64 n = counts.shape[0], k = 0, i, t = 0
    with nogil:
        for i in range(n):  # branch-free: vectorizes
            k += counts[i] > 0
    out = np.empty(k + 1, np.int64)
    cdef i64[::1] o = out
    if k:
        with nogil:
            for i in range(n):
                if counts[i] > 0:
                    o[t] = i
                    t += 1
                    if t == k:
                        break
    return out[:k]
