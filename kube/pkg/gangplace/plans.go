package gangplace

import (
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

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
