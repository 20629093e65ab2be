package gangplace

import (
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// completionIndexKey is an Indexed Job's completion index (label or annotation): gangplace gives
// such a member the slot at that position of the plan, and so does the plan cache.
const completionIndexKey = "batch.kubernetes.io/job-completion-index"

// gangKey is the gang key gangplace derives from a pod's labels ("namespace/name"; service/gangs.py
// gang_key: the first of gangLabels present, a label before an annotation), "" for no gang. The
// plan cache is keyed by it; an answer whose gang differs is not cached.
func gangKey(pod *v1.Pod) string {
	ns := pod.Namespace
	if ns == "" {
		ns = "default"
	}
	for _, k := range gangLabels {
		v, ok := pod.Labels[k]
		if !ok {
			v = pod.Annotations[k]
		}
		if v = strings.TrimSpace(v); v != "" {
			return ns + "/" + v
		}
	}
	return ""
}

// completionIndex is the pod's completion index, -1 when it has none (or it is not a number).
func completionIndex(pod *v1.Pod) int32 {
	v, ok := pod.Labels[completionIndexKey]
	if !ok {
		v, ok = pod.Annotations[completionIndexKey]
	}
	if !ok {
		return -1
	}
	i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || i < 0 {
		return -1
	}
	return int32(i)
}

// gangPlan is one gang's plan as gangplace answered it to the member that made the call: the
// slots no member claimed yet, handed out here to the next members without a call.
type gangPlan struct {
	gang       string // gangplace's gang key
	need, size int
	gpus       int64 // per-pod requests the slots were planned for
	cpu        int64 // millicores
	memory     int64 // bytes
	free       []*pb.PodAssignment
	given      map[types.UID]string // members given a slot of this plan -> node
	expires    time.Time
}

// planCache holds each gang's plan between its members' PreFilters (issue 18: at most one round
// trip per gang). Entries end when gangplace's reservation may have: at half the reservation's
// time left (a later call refreshes it), when the gang is rejected, unreserved or bound whole,
// or when a member finds no slot left (the next answer replaces the entry). Safe for concurrent use.
type planCache struct {
	mu    sync.Mutex
	plans map[string]*gangPlan
	now   func() time.Time
}

func newPlanCache() *planCache {
	return &planCache{plans: map[string]*gangPlan{}, now: time.Now}
}

// take gives member uid a node of its gang's cached plan: the slot it was given before, else the
// free slot at its completion index, else the first free slot. ok is false when there is no
// usable plan (none, expired, no free slot, or the member requests more than a slot holds):
// ask gangplace.
func (c *planCache) take(key string, uid types.UID, index int32, gpus, cpu, memory int64) (node string, p *gangPlan, ok bool) {
	if key == "" {
		return "", nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p = c.plans[key]
	if p == nil {
		return "", nil, false
	}
	if c.now().After(p.expires) {
		delete(c.plans, key)
		return "", nil, false
	}
	if n, given := p.given[uid]; given {
		return n, p, true
	}
	if gpus > p.gpus || cpu > p.cpu || memory > p.memory || len(p.free) == 0 {
		return "", nil, false
	}
	pick := 0
	if index >= 0 {
		for i, s := range p.free {
			if s.GetIndex() == index {
				pick = i
				break
			}
		}
	}
	node = p.free[pick].GetNode()
	p.free = append(p.free[:pick], p.free[pick+1:]...)
	p.given[uid] = node
	return node, p, true
}

// put keeps a gang member's answer: uid goes to node, the answer's free slots wait for the next
// members. An answer without free slots (or for another gang key) drops the entry.
func (c *planCache) put(key string, uid types.UID, node string, resp *pb.PlanMemberResponse) {
	if key == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := resp.GetGangPodSet()
	if resp.GetGang() != key || ps == nil || len(resp.GetGangSlots()) == 0 || resp.GetPlanTtlS() <= 0 {
		delete(c.plans, key)
		return
	}
	c.plans[key] = &gangPlan{gang: key, need: int(resp.GetMinCount()), size: int(resp.GetGangSize()),
		gpus: int64(ps.GetGpus()), cpu: ps.GetCpu(), memory: ps.GetMemory(),
		free:    append([]*pb.PodAssignment(nil), resp.GetGangSlots()...),
		given:   map[types.UID]string{uid: node},
		expires: c.now().Add(seconds(resp.GetPlanTtlS() / 2))}
}

// drop forgets a gang's plan (rejected, unreserved, re-planned or bound whole).
func (c *planCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.plans, key)
}

// len is the number of gangs with a cached plan.
func (c *planCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.plans)
}

// shape is what gangplace's answer for a pod of no gang depends on: its requests.
type shape struct{ gpus, cpu, memory int64 }

// singleAnswer is gangplace's answer for pods of no gang of one shape: the nodes no gang's
// reservation holds that fit it, and their best-fit scores.
type singleAnswer struct {
	nodes  sets.Set[string]
	scores map[string]int64
	at     time.Time
}

// singleCache reuses gangplace's answer for pods of no gang of one shape for at most maxAge
// (singlePodAnswerMaxAgeSeconds; 0: one call per pod). What may change that answer:
//   - a gang's reservation, planned or re-planned only through this plugin's PlanMember calls for
//     gang members and dropped by its Unreserve: both clear the cache, so a pod of no gang never
//     takes capacity reserved for a gang on a stale answer;
//   - binds and deletions of pods: the scheduler's own Filter (NodeResourcesFit) sees them, and
//     best-fit keeps its order as the node it chose fills (that node and its domains only become
//     fuller, the order among the others does not change), so for a stream of such pods the stale
//     scores pick the nodes fresh ones would; nodes freed since the answer are missed until it
//     ages out, and a pod that fits nowhere (PostFilter) clears the cache.
type singleCache struct {
	mu      sync.Mutex
	answers map[shape]*singleAnswer
	maxAge  time.Duration
	now     func() time.Time
}

func newSingleCache(maxAge time.Duration) *singleCache {
	return &singleCache{answers: map[shape]*singleAnswer{}, maxAge: maxAge, now: time.Now}
}

func (c *singleCache) get(s shape) *singleAnswer {
	if c.maxAge <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.answers[s]
	if a == nil || c.now().Sub(a.at) >= c.maxAge {
		return nil
	}
	return a
}

func (c *singleCache) put(s shape, a *singleAnswer) {
	if c.maxAge <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) >= 256 { // many shapes: start over rather than grow
		c.answers = map[shape]*singleAnswer{}
	}
	a.at = c.now()
	c.answers[s] = a
}

// clear forgets every answer (a gang's reservation may have changed).
func (c *singleCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) > 0 {
		c.answers = map[shape]*singleAnswer{}
	}
}
