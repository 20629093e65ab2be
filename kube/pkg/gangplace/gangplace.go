// Package gangplace is the gangplace-scheduler's Gangplace plugin: a thin adapter from the
// kube-scheduler framework to gangplace's gang planner over gRPC (gangplace.v1), as
// scheduler-plugins' coscheduling is an adapter over its core. It keeps no placement logic.
//
// Algorithm overview, per pod:
//  1. PreFilter: a pod that requests no GPUs is skipped (the framework's normal path); a GPU pod
//     of no gang costs one PlanMember call (singleGPUPods: score; "skip" skips it too) that
//     narrows its candidates to the nodes no gang's reservation holds and brings gangplace's
//     best-fit scores for them. A gang member costs one PlanMember call, with a deadline, on the one
//     connection made at start: gangplace plans and reserves the whole gang on the first member
//     and answers each member's node. The answer is kept in the CycleState, and the PreFilter
//     result narrows the candidates to that node. NOT_NOW -> Unschedulable, NEVER ->
//     UnschedulableAndUnresolvable, WAIT or gangplace unreachable -> Error (retried from the
//     backoff queue; the reason shows in the pod's PodScheduled condition).
//  2. Filter and Score read only the CycleState: the planned node passes and scores highest.
//  3. Reserve counts the member in the gang's barrier; Permit makes it wait until the gang's
//     min_count members are reserved, then allows every waiting member of the gang. A member
//     whose wait times out is rejected, and its Unreserve rejects every waiting sibling and
//     releases the gang's reservation in gangplace: nothing of a gang binds unless all of it can.
//  4. PostBind counts the bind; gangplace learns it from its Kubernetes watch (in order with the
//     pod's deletion), the member's reserved slot holding the capacity until then.
package gangplace

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// Name is the plugin's name in the KubeSchedulerConfiguration.
const Name = "Gangplace"

const stateKey fwk.StateKey = Name

// Gang labels and annotations that make a pod a gang member (service/gangs.py reads the same;
// gangplace decides what they mean, this only avoids a round trip for pods of no gang).
var gangLabels = []string{"gangplace.dev/gang", "scheduling.x-k8s.io/pod-group", "scheduling.k8s.io/group-name"}

// waitingPods is the part of the framework handle the Permit barrier uses.
type waitingPods interface {
	IterateOverWaitingPods(callback func(fwk.WaitingPod))
}

// Plugin implements PreFilter, Filter, PreScore, Score, Reserve, Permit and PostBind.
type Plugin struct {
	args       Args
	client     pb.GangplaceClient
	conn       *grpc.ClientConn
	waiting    waitingPods
	barrier    *barrier
	plans      *planCache
	singles    *singleCache
	victims    victimPods // nil: no preemption (tests without a cluster)
	preempting *preemptions
	timeout    time.Duration
}

var (
	_ fwk.PreFilterPlugin  = (*Plugin)(nil)
	_ fwk.FilterPlugin     = (*Plugin)(nil)
	_ fwk.PostFilterPlugin = (*Plugin)(nil)
	_ fwk.PreScorePlugin   = (*Plugin)(nil)
	_ fwk.ScorePlugin      = (*Plugin)(nil)
	_ fwk.ReservePlugin    = (*Plugin)(nil)
	_ fwk.PermitPlugin     = (*Plugin)(nil)
	_ fwk.PostBindPlugin   = (*Plugin)(nil)
)

// New is the plugin factory (k8s.io/kubernetes/pkg/scheduler/framework/runtime.PluginFactory).
func New(_ context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := Parse(obj)
	if err != nil {
		return nil, err
	}
	creds, err := transport(args)
	if err != nil {
		return nil, err
	}
	// one connection for the plugin's life; it connects lazily and reconnects by itself
	conn, err := grpc.NewClient(args.Address, creds)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	pl := newPlugin(args, conn, pb.NewGangplaceClient(conn), h)
	if h != nil && h.SharedInformerFactory() != nil && h.ClientSet() != nil {
		pl.victims = apiVictims{lister: h.SharedInformerFactory().Core().V1().Pods().Lister(), client: h.ClientSet()}
	}
	return pl, nil
}

func newPlugin(args Args, conn *grpc.ClientConn, client pb.GangplaceClient, w waitingPods) *Plugin {
	pl := &Plugin{args: args, client: client, conn: conn, waiting: w, barrier: newBarrier(), plans: newPlanCache(),
		singles: newSingleCache(seconds(args.SinglePodAnswerMaxAgeSeconds)), preempting: newPreemptions(),
		timeout: seconds(args.CallTimeoutSeconds)}
	return pl
}

// Name implements fwk.Plugin.
func (pl *Plugin) Name() string { return Name }

// plan is gangplace's answer for one member, kept in the CycleState for the cycle.
type plan struct {
	node   string // "" when gangplace did not place the member (reason says why), or a single pod
	reason string
	notNow bool             // gangplace answered NOT_NOW: preemption may help (PostFilter)
	single map[string]int64 // a pod of no gang: node -> score over the nodes it may use
	gang   string
	need   int
	size   int
}

func (p *plan) Clone() fwk.StateData { return p }

// readPlan is the gang member's plan (nil: not planned by gangplace, not placed, or no gang).
func readPlan(state fwk.CycleState) *plan {
	p := readAnswer(state)
	if p == nil || p.node == "" {
		return nil
	}
	return p
}

// readAnswer is gangplace's answer of this cycle, placed or not (nil: no call made).
func readAnswer(state fwk.CycleState) *plan {
	d, err := state.Read(stateKey)
	if err != nil {
		return nil
	}
	p, _ := d.(*plan)
	return p
}

// LeaderWorkerSet sets these labels on every pod of a group: each group is one gang.
const (
	lwsName       = "leaderworkerset.sigs.k8s.io/name"
	lwsGroupIndex = "leaderworkerset.sigs.k8s.io/group-index"
)

// isGangMember says whether a pod names a gang by any convention gangplace reads.
func isGangMember(pod *v1.Pod) bool {
	for _, k := range gangLabels {
		if pod.Labels[k] != "" || pod.Annotations[k] != "" {
			return true
		}
	}
	return pod.Labels[lwsName] != "" && pod.Labels[lwsGroupIndex] != ""
}

func requests(pod *v1.Pod) v1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

func (pl *Plugin) gpus(req v1.ResourceList) int64 {
	q, ok := req[v1.ResourceName(pl.args.GPUResource)]
	if !ok {
		return 0
	}
	return q.Value()
}

// PreFilter asks gangplace where this pod goes: at most one round trip per gang (see the
// overview), none for a member whose gang's plan is cached.
func (pl *Plugin) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	req := requests(pod)
	gpus := pl.gpus(req)
	if gpus == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	member := isGangMember(pod)
	if !member && pl.args.SingleGPUPods == "skip" {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	key := ""
	sh := shape{gpus: gpus, cpu: req.Cpu().MilliValue(), memory: req.Memory().Value()}
	if !member {
		if a := pl.singles.get(sh); a != nil {
			state.Write(stateKey, &plan{single: a.scores})
			return &fwk.PreFilterResult{NodeNames: a.nodes}, nil
		}
	} else {
		key = gangKey(pod)
		if node, gp, ok := pl.plans.take(key, pod.UID, completionIndex(pod), gpus, req.Cpu().MilliValue(), req.Memory().Value()); ok {
			state.Write(stateKey, &plan{node: node, gang: gp.gang, need: gp.need, size: gp.size})
			return &fwk.PreFilterResult{NodeNames: sets.New(node)}, nil
		}
	}
	body, err := podJSON(pod)
	if err != nil {
		return nil, fwk.AsStatus(fmt.Errorf("gangplace: encoding pod: %w", err))
	}
	in := &pb.PlanMemberRequest{PodJson: body}
	if key != "" {
		in.Claimed = pl.barrier.claims(key)
	}
	cctx, cancel := context.WithTimeout(ctx, pl.timeout)
	defer cancel()
	resp, err := pl.client.PlanMember(cctx, in)
	if member { // the gang's reservation may be new or re-planned: answers for pods of no gang are stale
		pl.singles.clear()
	}
	if err != nil {
		pl.plans.drop(key)
		if status.Code(err) == codes.InvalidArgument { // the pod's own labels are wrong
			return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gangplace: "+status.Convert(err).Message())
		}
		return nil, fwk.AsStatus(fmt.Errorf("gangplace unreachable at %s (%s): GPU gang pods wait, nothing of a gang binds until it answers",
			pl.args.Address, statusText(err)))
	}
	if resp.GetVerdict() != pb.PlanMemberResponse_PLACE {
		pl.plans.drop(key)
	}
	switch resp.GetVerdict() {
	case pb.PlanMemberResponse_PLACE:
		if !member || resp.GetGang() == "" {
			if member { // gangplace reads the labels differently: do not guess
				return nil, fwk.AsStatus(fmt.Errorf("gangplace: the pod's gang labels name no gang in gangplace"))
			}
			a := &singleAnswer{nodes: sets.New(resp.GetNodes()...), scores: make(map[string]int64, len(resp.GetNodes()))}
			for _, n := range resp.GetNodes() {
				a.scores[n] = int64(resp.GetScores()[n])
			}
			pl.singles.put(sh, a)
			state.Write(stateKey, &plan{single: a.scores})
			return &fwk.PreFilterResult{NodeNames: a.nodes}, nil
		}
		if len(resp.GetNodes()) != 1 {
			pl.plans.drop(key)
			return nil, fwk.AsStatus(fmt.Errorf("gangplace: expected one node for gang member, got %d (gang %q)",
				len(resp.GetNodes()), resp.GetGang()))
		}
		p := &plan{node: resp.GetNodes()[0], gang: resp.GetGang(), need: int(resp.GetMinCount()), size: int(resp.GetGangSize())}
		pl.plans.put(key, pod.UID, p.node, resp)
		state.Write(stateKey, p)
		return &fwk.PreFilterResult{NodeNames: sets.New(p.node)}, nil
	case pb.PlanMemberResponse_NOT_NOW:
		// kept so that Filter fails every node in the preemption dry run too: DefaultPreemption
		// evicting pods one node at a time would break other gangs without making this one fit
		state.Write(stateKey, &plan{gang: resp.GetGang(), reason: resp.GetReason(), notNow: true})
		return nil, fwk.NewStatus(fwk.Unschedulable, "gangplace: "+resp.GetReason())
	case pb.PlanMemberResponse_NEVER:
		state.Write(stateKey, &plan{gang: resp.GetGang(), reason: resp.GetReason()})
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gangplace: "+resp.GetReason())
	default: // WAIT: temporary, retried from the backoff queue within seconds
		return nil, fwk.AsStatus(fmt.Errorf("gangplace: %s", resp.GetReason()))
	}
}

// PreFilterExtensions implements fwk.PreFilterPlugin (no incremental updates).
func (pl *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter passes only the member's planned node, and no node for a member gangplace did not place
// (so the preemption dry run finds no node either).
func (pl *Plugin) Filter(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	p := readAnswer(state)
	if p == nil {
		return nil
	}
	if p.single != nil {
		if _, ok := p.single[nodeInfo.Node().Name]; !ok {
			return fwk.NewStatus(fwk.Unschedulable, "gangplace: capacity reserved for a gang, or not free in gangplace's view")
		}
		return nil
	}
	if p.node == "" {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gangplace: "+p.reason)
	}
	if name := nodeInfo.Node().Name; name != p.node {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gangplace: gang %s: this member is planned on %s", p.gang, p.node))
	}
	return nil
}

// PreScore skips Score for pods gangplace did not answer for.
func (pl *Plugin) PreScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	if p := readAnswer(state); p == nil || (p.single == nil && p.node == "") {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score follows the plan: the planned node scores the maximum, any other node 0; a pod of no
// gang gets gangplace's best-fit score.
func (pl *Plugin) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	p := readAnswer(state)
	switch {
	case p == nil:
		return 0, nil
	case p.single != nil:
		return p.single[nodeInfo.Node().Name], nil
	case nodeInfo.Node().Name == p.node:
		return fwk.MaxNodeScore, nil
	}
	return 0, nil
}

// ScoreExtensions implements fwk.ScorePlugin (scores are already in range).
func (pl *Plugin) ScoreExtensions() fwk.ScoreExtensions { return nil }

// Reserve counts the member in its gang's barrier (gangplace already holds its slot).
func (pl *Plugin) Reserve(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	p := readPlan(state)
	if p == nil {
		return nil
	}
	if nodeName != p.node { // cannot happen while Filter passes only p.node; refuse rather than bind off-plan
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gangplace: gang %s: member planned on %s, not %s", p.gang, p.node, nodeName))
	}
	pl.barrier.reserve(p.gang, pod.UID, nodeName, p.need, p.size)
	return nil
}

// Unreserve: a reserved member will not bind now (its Permit wait timed out, a sibling was
// rejected, or its binding failed). Nothing of the gang may bind alone: every waiting sibling is
// rejected, and gangplace gives the slot and the gang's reservation back (off this goroutine).
func (pl *Plugin) Unreserve(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ string) {
	p := readPlan(state)
	if p == nil {
		return
	}
	pl.barrier.unreserve(pod.UID)
	pl.plans.drop(p.gang) // gangplace drops the reservation: the next member plans again
	pl.singles.clear()
	pl.rejectWaiting(p.gang, pod.UID, fmt.Sprintf("gangplace: gang %s: member %s/%s was unreserved; the gang is rejected whole",
		p.gang, pod.Namespace, pod.Name))
	uid := string(pod.UID)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), pl.timeout)
		defer cancel()
		if _, err := pl.client.Unreserve(ctx, &pb.UnreserveRequest{PodUid: uid, Gang: p.gang, ReleaseGang: true}); err != nil {
			klog.ErrorS(err, "gangplace: Unreserve failed; gangplace expires the reservation itself", "gang", p.gang, "pod", uid)
		}
	}()
}

func (pl *Plugin) rejectWaiting(gang string, except types.UID, msg string) {
	if pl.waiting == nil {
		return
	}
	pl.waiting.IterateOverWaitingPods(func(wp fwk.WaitingPod) {
		uid := wp.GetPod().UID
		if uid != except && pl.barrier.gangOf(uid) == gang {
			wp.Reject(Name, msg)
		}
	})
}

// Permit holds each member until its gang's min_count members are reserved, then allows every
// waiting member of the gang (coscheduling's barrier).
func (pl *Plugin) Permit(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	p := readPlan(state)
	if p == nil {
		return nil, 0
	}
	have, want := pl.barrier.reserve(p.gang, pod.UID, nodeName, p.need, p.size) // idempotent: Reserve counted it
	if have < want {
		return fwk.NewStatus(fwk.Wait, fmt.Sprintf("gangplace: gang %s: %d of %d members reserved", p.gang, have, want)),
			seconds(pl.args.PermitTimeoutSeconds)
	}
	if pl.waiting != nil {
		pl.waiting.IterateOverWaitingPods(func(wp fwk.WaitingPod) {
			if pl.barrier.gangOf(wp.GetPod().UID) == p.gang {
				wp.Allow(Name)
			}
		})
	}
	return nil, 0
}

// PostBind counts the bind in the gang's barrier; once the whole gang is bound its cached plan is
// dropped. The bind itself reaches gangplace through its Kubernetes watch, in order with the
// pod's later deletion: a second path (a BindPods call from here) could arrive after the watch
// reported the pod deleted and leave its GPUs counted in gangplace's view for good. Until the
// watch reports the bind, the member's slot of the gang's reservation holds the capacity.
func (pl *Plugin) PostBind(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ string) {
	if readPlan(state) == nil {
		return
	}
	if done := pl.barrier.bound(pod.UID); done != "" {
		pl.plans.drop(done)
	}
}

// Close releases the gRPC connection.
func (pl *Plugin) Close() error {
	if pl.conn != nil {
		return pl.conn.Close()
	}
	return nil
}

// wirePod is the part of a Pod gangplace reads (service/gangs.py parse_pod): identity, gang
// labels and annotations, requests (containers, init containers and sidecars, overhead),
// priority, node selector, node and status. Sending only this keeps the call small: no managed
// fields, probes, volumes or container status.
type wirePod struct {
	Metadata wireMeta `json:"metadata"`
	Spec     wireSpec `json:"spec"`
	Status   struct {
		Phase             v1.PodPhase `json:"phase,omitempty"`
		NominatedNodeName string      `json:"nominatedNodeName,omitempty"`
	} `json:"status"`
}

type wireMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               types.UID         `json:"uid"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	DeletionTimestamp *metav1.Time      `json:"deletionTimestamp,omitempty"`
}

type wireSpec struct {
	Containers     []wireContainer   `json:"containers"`
	InitContainers []wireContainer   `json:"initContainers,omitempty"`
	Overhead       v1.ResourceList   `json:"overhead,omitempty"`
	Priority       *int32            `json:"priority,omitempty"`
	NodeSelector   map[string]string `json:"nodeSelector,omitempty"`
	NodeName       string            `json:"nodeName,omitempty"`
}

type wireContainer struct {
	Name          string                     `json:"name"`
	Resources     v1.ResourceRequirements    `json:"resources"`
	RestartPolicy *v1.ContainerRestartPolicy `json:"restartPolicy,omitempty"`
}

func wireContainers(cs []v1.Container) []wireContainer {
	out := make([]wireContainer, len(cs))
	for i := range cs {
		out[i] = wireContainer{Name: cs[i].Name, Resources: cs[i].Resources, RestartPolicy: cs[i].RestartPolicy}
	}
	return out
}

// podJSON is the pod's JSON for PlanMember, reduced to what gangplace reads (wirePod).
func podJSON(pod *v1.Pod) ([]byte, error) {
	w := wirePod{
		Metadata: wireMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Labels: pod.Labels,
			Annotations: pod.Annotations, DeletionTimestamp: pod.DeletionTimestamp},
		Spec: wireSpec{Containers: wireContainers(pod.Spec.Containers), InitContainers: wireContainers(pod.Spec.InitContainers),
			Overhead: pod.Spec.Overhead, Priority: pod.Spec.Priority, NodeSelector: pod.Spec.NodeSelector, NodeName: pod.Spec.NodeName},
	}
	w.Status.Phase, w.Status.NominatedNodeName = pod.Status.Phase, pod.Status.NominatedNodeName
	return json.Marshal(&w)
}

// statusText is a gRPC error's message.
func statusText(err error) string { return status.Convert(err).Message() }
