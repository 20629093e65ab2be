package gangplace

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clientset "k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// victimPods finds and deletes the pods a gang preemption evicts (the scheduler's pod informer
// and its client; a fake in tests).
type victimPods interface {
	// present is the pods among uids that still exist (terminating ones included).
	present(uids []string) []*v1.Pod
	delete(ctx context.Context, pod *v1.Pod) error
}

type apiVictims struct {
	lister corelisters.PodLister
	client clientset.Interface
}

func (a apiVictims) present(uids []string) []*v1.Pod {
	want := make(map[types.UID]bool, len(uids))
	for _, u := range uids {
		want[types.UID(u)] = true
	}
	pods, err := a.lister.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*v1.Pod
	for _, p := range pods {
		if want[p.UID] {
			out = append(out, p)
		}
	}
	return out
}

func (a apiVictims) delete(ctx context.Context, pod *v1.Pod) error {
	uid := pod.UID
	return a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
}

// preemptions remembers, per preempting gang, the victims it is waiting for: the gang asks
// gangplace for another plan only once they are all gone (or after preemptionPatience), so a
// victim that is still terminating is never counted twice and no extra gang is evicted for it.
type preemptions struct {
	mu      sync.Mutex
	victims map[string][]string // preemptor gang -> victim pod UIDs
	since   map[string]time.Time
	now     func() time.Time
}

const preemptionPatience = 2 * time.Minute

func newPreemptions() *preemptions {
	return &preemptions{victims: map[string][]string{}, since: map[string]time.Time{}, now: time.Now}
}

// waiting says whether gang still waits for victims of its last preemption to go.
func (p *preemptions) waiting(gang string, pods victimPods) bool {
	p.mu.Lock()
	uids, ok := p.victims[gang]
	since := p.since[gang]
	p.mu.Unlock()
	if !ok {
		return false
	}
	if p.now().Sub(since) < preemptionPatience && len(pods.present(uids)) > 0 {
		return true
	}
	p.mu.Lock()
	delete(p.victims, gang)
	delete(p.since, gang)
	p.mu.Unlock()
	return false
}

func (p *preemptions) start(gang string, uids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.victims[gang] = uids
	p.since[gang] = p.now()
}

// PostFilter: no node passed this pod.
//   - A reused answer for pods of no gang may have missed nodes freed since: it is forgotten, so
//     that the retry asks gangplace.
//   - A gang member gangplace answered NOT_NOW for (its gang does not fit now): gangplace plans
//     which running lower-priority gangs to evict whole (PreemptMember, engine/exact/preempt.py),
//     and their pods are deleted off the scheduling cycle; the gang's members are retried as the
//     victims go and are planned into the room they leave. Once per gang until those victims
//     are gone. DefaultPreemption (which runs first) finds nothing for such a member, because
//     its Filter fails every node: it never evicts pods one node at a time for a gang.
//
// Never nominates a node and answers Unschedulable, so the scheduler's other PostFilter plugins
// keep their say.
func (pl *Plugin) PostFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	pl.singles.clear()
	p := readAnswer(state)
	if p == nil || !p.notNow || p.gang == "" || pl.victims == nil ||
		(pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever) {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if pl.preempting.waiting(p.gang, pl.victims) {
		return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gangplace: gang %s: waiting for the pods evicted for it to go", p.gang))
	}
	body, err := podJSON(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	cctx, cancel := context.WithTimeout(ctx, pl.timeout)
	defer cancel()
	resp, err := pl.client.PreemptMember(cctx, &pb.PlanMemberRequest{PodJson: body})
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, "gangplace: no preemption plan: "+statusText(err))
	}
	if !resp.GetFeasible() || len(resp.GetVictimPods()) == 0 {
		return nil, fwk.NewStatus(fwk.Unschedulable, "gangplace: preemption does not help: "+resp.GetReason())
	}
	gangs := make([]string, 0, len(resp.GetVictims()))
	for _, v := range resp.GetVictims() {
		gangs = append(gangs, v.GetGang())
	}
	uids := resp.GetVictimPods()
	pl.preempting.start(p.gang, uids)
	victims := pl.victims.present(uids)
	klog.InfoS("gangplace: preempting lower-priority gangs whole", "gang", p.gang, "victimGangs", gangs, "pods", len(victims))
	go func() {
		for _, v := range victims {
			dctx, cancel := context.WithTimeout(context.Background(), pl.timeout)
			if err := pl.victims.delete(dctx, v); err != nil {
				klog.ErrorS(err, "gangplace: evicting a preemption victim", "pod", klog.KObj(v), "for", p.gang)
			}
			cancel()
		}
	}()
	return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gangplace: gang %s: evicting %d pods of lower-priority gang(s) %s to make room",
		p.gang, len(victims), strings.Join(gangs, ", ")))
}
