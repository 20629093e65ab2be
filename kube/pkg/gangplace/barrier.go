package gangplace

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// barrier is the Permit barrier's bookkeeping (scheduler-plugins' coscheduling keeps the same in
// its core): which members of each gang are reserved in this scheduler, and how many must be
// before any of them may bind. Gang semantics (who goes where, the gang's size and min_count)
// come from gangplace; this only counts. Safe for concurrent use: Reserve and Permit run in the
// scheduling cycle, Unreserve and PostBind in binding goroutines.
type barrier struct {
	mu    sync.Mutex
	gangs map[string]*gangState
	of    map[types.UID]string // member -> gang key
}

type gangState struct {
	reserved map[types.UID]string // reserved members -> node (bound ones stay until the gang is done)
	bound    int
	need     int // members that must be reserved before any binds (min_count)
	size     int
}

func newBarrier() *barrier {
	return &barrier{gangs: map[string]*gangState{}, of: map[types.UID]string{}}
}

// reserve records a member on its node; it returns how many of its gang are reserved and how
// many must be.
func (b *barrier) reserve(gang string, uid types.UID, node string, need, size int) (have, want int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.gangs[gang]
	if g == nil {
		g = &gangState{reserved: map[types.UID]string{}}
		b.gangs[gang] = g
	}
	g.need, g.size = need, size // the latest answer wins (a PodGroup's minMember may change)
	g.reserved[uid] = node
	b.of[uid] = gang
	return len(g.reserved), g.need
}

// unreserve forgets a member; it returns the gang it belonged to ("" if none).
func (b *barrier) unreserve(uid types.UID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	gang, ok := b.of[uid]
	if !ok {
		return ""
	}
	delete(b.of, uid)
	if g := b.gangs[gang]; g != nil {
		delete(g.reserved, uid)
		if len(g.reserved) == 0 {
			delete(b.gangs, gang)
		}
	}
	return gang
}

// bound counts a bind; once every member of the gang is bound its entry is dropped and bound
// returns the gang's key ("" otherwise).
func (b *barrier) bound(uid types.UID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	gang, ok := b.of[uid]
	if !ok {
		return ""
	}
	g := b.gangs[gang]
	if g == nil {
		return ""
	}
	g.bound++
	if g.size > 0 && g.bound >= g.size {
		for u := range g.reserved {
			delete(b.of, u)
		}
		delete(b.gangs, gang)
		return gang
	}
	return ""
}

// claims are the gang's reserved members and their nodes, for gangplace to claim their slots
// before it answers another member (PlanMemberRequest.claimed).
func (b *barrier) claims(gang string) []*pb.MemberClaim {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.gangs[gang]
	if g == nil {
		return nil
	}
	out := make([]*pb.MemberClaim, 0, len(g.reserved))
	for uid, node := range g.reserved {
		out = append(out, &pb.MemberClaim{PodUid: string(uid), Node: node})
	}
	return out
}

// gangOf is the gang key of a reserved member ("" if none).
func (b *barrier) gangOf(uid types.UID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.of[uid]
}
