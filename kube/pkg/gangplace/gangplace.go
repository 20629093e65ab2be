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
//  4. PostBind records the bind in gangplace (BindPods) off the scheduling cycle; gangplace's
//     Kubernetes sync sees the same bind from its watch, and the two agree (same requests).
package gangplace

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
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
	args    Args
	client  pb.GangplaceClient
	conn    *grpc.ClientConn
	waiting waitingPods
	barrier *barrier
	timeout time.Duration
}

var (
	_ fwk.PreFilterPlugin = (*Plugin)(nil)
	_ fwk.FilterPlugin    = (*Plugin)(nil)
	_ fwk.PreScorePlugin  = (*Plugin)(nil)
	_ fwk.ScorePlugin     = (*Plugin)(nil)
	_ fwk.ReservePlugin   = (*Plugin)(nil)
	_ fwk.PermitPlugin    = (*Plugin)(nil)
	_ fwk.PostBindPlugin  = (*Plugin)(nil)
)

// New is the plugin factory (k8s.io/kubernetes/pkg/scheduler/framework/runtime.PluginFactory).
func New(_ context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := Parse(obj)
	if err != nil {
		return nil, err
	}
	// one connection for the plugin's life; it connects lazily and reconnects by itself
	conn, err := grpc.NewClient(args.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	return newPlugin(args, conn, pb.NewGangplaceClient(conn), h), nil
}

func newPlugin(args Args, conn *grpc.ClientConn, client pb.GangplaceClient, w waitingPods) *Plugin {
	return &Plugin{args: args, client: client, conn: conn, waiting: w, barrier: newBarrier(),
		timeout: seconds(args.CallTimeoutSeconds)}
}

// Name implements fwk.Plugin.
func (pl *Plugin) Name() string { return Name }

// plan is gangplace's answer for one member, kept in the CycleState for the cycle.
type plan struct {
	node   string // "" when gangplace did not place the member (reason says why), or a single pod
	reason string
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

// PreFilter asks gangplace where this gang member goes: one round trip (see the overview).
func (pl *Plugin) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if pl.gpus(requests(pod)) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	member := isGangMember(pod)
	if !member && pl.args.SingleGPUPods == "skip" {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	body, err := json.Marshal(pod)
	if err != nil {
		return nil, fwk.AsStatus(fmt.Errorf("gangplace: encoding pod: %w", err))
	}
	cctx, cancel := context.WithTimeout(ctx, pl.timeout)
	defer cancel()
	resp, err := pl.client.PlanMember(cctx, &pb.PlanMemberRequest{PodJson: body})
	if err != nil {
		if status.Code(err) == codes.InvalidArgument { // the pod's own labels are wrong
			return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gangplace: "+status.Convert(err).Message())
		}
		return nil, fwk.AsStatus(fmt.Errorf("gangplace unreachable at %s (%s): GPU gang pods wait, nothing of a gang binds until it answers",
			pl.args.Address, status.Convert(err).Message()))
	}
	switch resp.GetVerdict() {
	case pb.PlanMemberResponse_PLACE:
		if !member || resp.GetGang() == "" {
			if member { // gangplace reads the labels differently: do not guess
				return nil, fwk.AsStatus(fmt.Errorf("gangplace: the pod's gang labels name no gang in gangplace"))
			}
			p := &plan{single: make(map[string]int64, len(resp.GetNodes()))}
			for _, n := range resp.GetNodes() {
				p.single[n] = int64(resp.GetScores()[n])
			}
			state.Write(stateKey, p)
			return &fwk.PreFilterResult{NodeNames: sets.New(resp.GetNodes()...)}, nil
		}
		if len(resp.GetNodes()) != 1 {
			return nil, fwk.AsStatus(fmt.Errorf("gangplace: expected one node for gang member, got %d (gang %q)",
				len(resp.GetNodes()), resp.GetGang()))
		}
		p := &plan{node: resp.GetNodes()[0], gang: resp.GetGang(), need: int(resp.GetMinCount()), size: int(resp.GetGangSize())}
		state.Write(stateKey, p)
		return &fwk.PreFilterResult{NodeNames: sets.New(p.node)}, nil
	case pb.PlanMemberResponse_NOT_NOW:
		// kept so that Filter fails every node in the preemption dry run too: DefaultPreemption
		// evicting pods one node at a time would break other gangs without making this one fit
		state.Write(stateKey, &plan{gang: resp.GetGang(), reason: resp.GetReason()})
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
	pl.barrier.reserve(p.gang, pod.UID, p.need, p.size)
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
func (pl *Plugin) Permit(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ string) (*fwk.Status, time.Duration) {
	p := readPlan(state)
	if p == nil {
		return nil, 0
	}
	have, want := pl.barrier.reserve(p.gang, pod.UID, p.need, p.size) // idempotent: Reserve counted it
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

// PostBind records the bind in gangplace (its slot becomes a bound pod), in the background.
func (pl *Plugin) PostBind(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) {
	p := readPlan(state)
	if p == nil {
		return
	}
	pl.barrier.bound(pod.UID)
	req := requests(pod)
	var priority int32
	if pod.Spec.Priority != nil {
		priority = *pod.Spec.Priority
	}
	b := &pb.PodBinding{Pod: string(pod.UID), Gang: p.gang, Node: nodeName, Gpus: int32(pl.gpus(req)),
		Cpu: req.Cpu().MilliValue(), Memory: req.Memory().Value(), Priority: priority}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), pl.timeout)
		defer cancel()
		if _, err := pl.client.BindPods(ctx, &pb.BindPodsRequest{Pods: []*pb.PodBinding{b}}); err != nil {
			klog.V(2).InfoS("gangplace: BindPods failed; its Kubernetes sync records the bind from the watch",
				"pod", b.Pod, "node", nodeName, "err", err)
		}
	}()
}

// Close releases the gRPC connection.
func (pl *Plugin) Close() error {
	if pl.conn != nil {
		return pl.conn.Close()
	}
	return nil
}
