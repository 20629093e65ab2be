package gangplace

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// fakeGangplace is an in-process gangplace.v1 server: PlanMember answers what answer() says for
// the pod, and every call is recorded.
type fakeGangplace struct {
	pb.UnimplementedGangplaceServer
	mu        sync.Mutex
	answer    func(pod *v1.Pod) (*pb.PlanMemberResponse, error)
	delay     time.Duration
	planned   []string // pod names, in call order
	unreserve []*pb.UnreserveRequest
	binds     []*pb.PodBinding
}

func (f *fakeGangplace) PlanMember(_ context.Context, r *pb.PlanMemberRequest) (*pb.PlanMemberResponse, error) {
	var pod v1.Pod
	if err := json.Unmarshal(r.GetPodJson(), &pod); err != nil {
		return nil, status.Error(codes.InvalidArgument, "pod_json: "+err.Error())
	}
	f.mu.Lock()
	f.planned = append(f.planned, pod.Name)
	delay := f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	return f.answer(&pod)
}

func (f *fakeGangplace) Unreserve(_ context.Context, r *pb.UnreserveRequest) (*pb.UnreserveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreserve = append(f.unreserve, r)
	return &pb.UnreserveResponse{Released: r.GetReleaseGang()}, nil
}

func (f *fakeGangplace) BindPods(_ context.Context, r *pb.BindPodsRequest) (*pb.ClusterUpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.binds = append(f.binds, r.GetPods()...)
	return &pb.ClusterUpdateResponse{Applied: int32(len(r.GetPods()))}, nil
}

func (f *fakeGangplace) calls() (planned []string, unreserve []*pb.UnreserveRequest, binds []*pb.PodBinding) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.planned...), append([]*pb.UnreserveRequest(nil), f.unreserve...),
		append([]*pb.PodBinding(nil), f.binds...)
}

// fakeWaiting stands in for the framework's waiting pods (fwk.Handle.IterateOverWaitingPods).
type fakeWaiting struct {
	mu   sync.Mutex
	pods map[types.UID]*waitingPod
}

type waitingPod struct {
	pod      *v1.Pod
	allowed  bool
	rejected string
}

func (w *waitingPod) GetPod() *v1.Pod                 { return w.pod }
func (w *waitingPod) GetPendingPlugins() []string     { return []string{Name} }
func (w *waitingPod) Allow(string)                    { w.allowed = true }
func (w *waitingPod) Reject(_, msg string) bool       { w.rejected = msg; return true }
func (w *waitingPod) Preempt(_ string, _ string) bool { return true }

func (f *fakeWaiting) IterateOverWaitingPods(cb func(fwk.WaitingPod)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.pods {
		cb(w)
	}
}

func (f *fakeWaiting) add(p *v1.Pod) *waitingPod {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waitingPod{pod: p}
	f.pods[p.UID] = w
	return w
}

// start serves fake on 127.0.0.1:0 and returns a plugin connected to it (address: the real one
// unless addr overrides it, e.g. a closed port).
func start(t *testing.T, fake *fakeGangplace, addr string) (*Plugin, *fakeWaiting) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGangplaceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	if addr == "" {
		addr = lis.Addr().String()
	}
	raw, _ := json.Marshal(map[string]any{"address": addr, "callTimeoutSeconds": 1, "permitTimeoutSeconds": 7})
	args, err := Parse(&runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(args.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWaiting{pods: map[types.UID]*waitingPod{}}
	pl := newPlugin(args, conn, pb.NewGangplaceClient(conn), w)
	t.Cleanup(func() { _ = pl.Close() })
	return pl, w
}

func gpuPod(name, gang string, gpus int64) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("1Gi")}}}}}}
	if gpus > 0 {
		p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	if gang != "" {
		p.Labels["gangplace.dev/gang"] = gang
		p.Labels["gangplace.dev/size"] = "2"
	}
	return p
}

func nodeInfo(name string) fwk.NodeInfo {
	ni := framework.NewNodeInfo()
	ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return ni
}

// planOnNodes answers PLACE for gang "ns/g" (size 2, min 2), pod name -> node.
func planOnNodes(nodes map[string]string) func(*v1.Pod) (*pb.PlanMemberResponse, error) {
	return func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{nodes[p.Name]},
			Gang: "ns/g", GangSize: 2, MinCount: 2}, nil
	}
}

func TestPreFilter(t *testing.T) {
	cases := []struct {
		name      string
		pod       *v1.Pod
		answer    *pb.PlanMemberResponse
		err       error
		wantCode  fwk.Code
		wantNodes []string
		wantCalls int
		wantText  string
	}{
		{name: "a pod without GPUs is skipped without a call", pod: gpuPod("cpu", "g", 0), wantCode: fwk.Skip},
		{name: "a GPU pod of no gang gets the nodes gangplace offers it", pod: gpuPod("single", "", 1),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1", "n2"}, Scores: map[string]int32{"n1": 80, "n2": 20}},
			wantCode: fwk.Success, wantNodes: []string{"n1", "n2"}, wantCalls: 1},
		{name: "a GPU pod of no gang with no unreserved room is unschedulable", pod: gpuPod("single", "", 1),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_NOT_NOW, Reason: "insufficient free capacity"},
			wantCode: fwk.Unschedulable, wantCalls: 1, wantText: "insufficient free capacity"},
		{name: "a pod with gang labels that gangplace places as no gang is an error, not a guess", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1"}},
			wantCode: fwk.Error, wantCalls: 1, wantText: "name no gang"},
		{name: "a planned member narrows the candidates to its node", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n3"}, Gang: "ns/g", GangSize: 2, MinCount: 2},
			wantCode: fwk.Success, wantNodes: []string{"n3"}, wantCalls: 1},
		{name: "a gang that does not fit now is unschedulable with gangplace's reason", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_NOT_NOW, Reason: "needs 16 pods in one block", Gang: "ns/g"},
			wantCode: fwk.Unschedulable, wantCalls: 1, wantText: "gangplace: needs 16 pods in one block"},
		{name: "a gang that can never fit is unresolvable", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_NEVER, Reason: "larger than the cluster", Gang: "ns/g"},
			wantCode: fwk.UnschedulableAndUnresolvable, wantCalls: 1, wantText: "larger than the cluster"},
		{name: "a temporary answer is an error retried from the backoff queue", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_WAIT, Reason: "size unknown", Gang: "ns/g"},
			wantCode: fwk.Error, wantCalls: 1, wantText: "size unknown"},
		{name: "bad labels are unresolvable with gangplace's message", pod: gpuPod("a", "g", 8),
			err: status.Error(codes.InvalidArgument, "label gangplace.dev/size: not an integer"), wantCode: fwk.UnschedulableAndUnresolvable,
			wantCalls: 1, wantText: "gangplace.dev/size"},
		{name: "a PLACE without exactly one node is refused, not guessed", pod: gpuPod("a", "g", 8),
			answer:   &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1", "n2"}, Gang: "ns/g"},
			wantCode: fwk.Error, wantCalls: 1, wantText: "expected one node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeGangplace{answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) { return tc.answer, tc.err }}
			pl, _ := start(t, fake, "")
			state := framework.NewCycleState()
			res, st := pl.PreFilter(context.Background(), state, tc.pod, nil)
			if st.Code() != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", st.Code(), st.AsError(), tc.wantCode)
			}
			if tc.wantText != "" && !strings.Contains(st.Message(), tc.wantText) {
				t.Fatalf("message %q does not contain %q", st.Message(), tc.wantText)
			}
			if tc.wantNodes != nil && (res == nil || res.NodeNames.Len() != len(tc.wantNodes) || !res.NodeNames.HasAll(tc.wantNodes...)) {
				t.Fatalf("PreFilterResult %v, want %v", res, tc.wantNodes)
			}
			if planned, _, _ := fake.calls(); len(planned) != tc.wantCalls {
				t.Fatalf("%d PlanMember calls, want %d", len(planned), tc.wantCalls)
			}
		})
	}
}

func TestLeaderWorkerSetGroupsAreGangsWithoutGangLabels(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"a pod of a LeaderWorkerSet group", map[string]string{lwsName: "vllm", lwsGroupIndex: "0"}, true},
		{"the set's name without a group index", map[string]string{lwsName: "vllm"}, false},
		{"a gangplace gang label", map[string]string{"gangplace.dev/gang": "g"}, true},
		{"no gang at all", map[string]string{"app": "x"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := gpuPod("a", "", 8)
			p.Labels = tc.labels
			if got := isGangMember(p); got != tc.want {
				t.Fatalf("isGangMember = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSingleGPUPodsFollowGangplacesScoresOrAreSkippedWhenConfigured(t *testing.T) {
	fake := &fakeGangplace{answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) {
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1", "n2"}, Scores: map[string]int32{"n1": 80, "n2": 20}}, nil
	}}
	pl, _ := start(t, fake, "")
	state := framework.NewCycleState()
	pod := gpuPod("single", "", 1)
	if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
		t.Fatal(st.AsError())
	}
	if st := pl.PreScore(context.Background(), state, pod, nil); !st.IsSuccess() {
		t.Fatalf("PreScore = %v, want scoring", st)
	}
	for _, tc := range []struct {
		node  string
		pass  bool
		score int64
	}{{"n1", true, 80}, {"n2", true, 20}, {"n3", false, 0}} {
		if st := pl.Filter(context.Background(), state, pod, nodeInfo(tc.node)); st.IsSuccess() != tc.pass {
			t.Errorf("Filter(%s) = %v, want pass=%v", tc.node, st, tc.pass)
		}
		if s, _ := pl.Score(context.Background(), state, pod, nodeInfo(tc.node)); s != tc.score {
			t.Errorf("Score(%s) = %d, want %d", tc.node, s, tc.score)
		}
	}
	if st := pl.Reserve(context.Background(), state, pod, "n1"); !st.IsSuccess() || pl.barrier.gangOf(pod.UID) != "" {
		t.Fatalf("Reserve of a single pod: %v, barrier %q", st, pl.barrier.gangOf(pod.UID))
	}
	if st, _ := pl.Permit(context.Background(), state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Permit of a single pod: %v, want no wait", st)
	}
	pl.args.SingleGPUPods = "skip"
	if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), pod, nil); !st.IsSkip() {
		t.Fatalf("singleGPUPods: skip: %v, want Skip", st)
	}
	if planned, _, _ := fake.calls(); len(planned) != 1 {
		t.Fatalf("%d calls, want 1 (none when skipped)", len(planned))
	}
}

func TestGangplaceUnreachableMakesGangPodsWaitWithAClearReason(t *testing.T) {
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := lis.Addr().String()
	_ = lis.Close()
	pl, _ := start(t, &fakeGangplace{}, closed)
	t0 := time.Now()
	_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("a", "g", 8), nil)
	if st.Code() != fwk.Error || !strings.Contains(st.Message(), "gangplace unreachable at "+closed) {
		t.Fatalf("got %v %q, want an Error naming the address", st.Code(), st.Message())
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("took %v, beyond the call deadline", d)
	}
}

func TestEveryCallHasADeadline(t *testing.T) {
	fake := &fakeGangplace{delay: 3 * time.Second, answer: planOnNodes(map[string]string{"a": "n1"})}
	pl, _ := start(t, fake, "") // callTimeoutSeconds: 1
	t0 := time.Now()
	_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("a", "g", 8), nil)
	if st.Code() != fwk.Error || time.Since(t0) > 2*time.Second {
		t.Fatalf("got %v after %v, want an Error after about 1 s", st.Code(), time.Since(t0))
	}
}

func TestFilterAndScoreFollowThePlan(t *testing.T) {
	pl, _ := start(t, &fakeGangplace{answer: planOnNodes(map[string]string{"a": "n2"})}, "")
	state := framework.NewCycleState()
	pod := gpuPod("a", "g", 8)
	if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
		t.Fatal(st.AsError())
	}
	for _, tc := range []struct {
		node      string
		wantPass  bool
		wantScore int64
	}{{"n1", false, 0}, {"n2", true, fwk.MaxNodeScore}, {"n3", false, 0}} {
		st := pl.Filter(context.Background(), state, pod, nodeInfo(tc.node))
		if st.IsSuccess() != tc.wantPass {
			t.Errorf("Filter(%s) = %v, want pass=%v", tc.node, st, tc.wantPass)
		}
		if s, _ := pl.Score(context.Background(), state, pod, nodeInfo(tc.node)); s != tc.wantScore {
			t.Errorf("Score(%s) = %d, want %d", tc.node, s, tc.wantScore)
		}
	}
	if st := pl.PreScore(context.Background(), framework.NewCycleState(), gpuPod("x", "", 8), nil); !st.IsSkip() {
		t.Errorf("PreScore of an unplanned pod = %v, want Skip", st)
	}
}

// cycle runs PreFilter, Reserve and Permit for one member, as the framework would.
func cycle(t *testing.T, pl *Plugin, pod *v1.Pod) (fwk.CycleState, *fwk.Status, time.Duration) {
	t.Helper()
	state := framework.NewCycleState()
	res, st := pl.PreFilter(context.Background(), state, pod, nil)
	if !st.IsSuccess() {
		t.Fatalf("PreFilter %s: %v", pod.Name, st.AsError())
	}
	node := res.NodeNames.UnsortedList()[0]
	if st := pl.Reserve(context.Background(), state, pod, node); !st.IsSuccess() {
		t.Fatalf("Reserve %s: %v", pod.Name, st.AsError())
	}
	st, wait := pl.Permit(context.Background(), state, pod, node)
	return state, st, wait
}

func TestPermitHoldsMembersUntilTheGangIsReservedThenAllowsAll(t *testing.T) {
	fake := &fakeGangplace{answer: planOnNodes(map[string]string{"a": "n1", "b": "n2"})}
	pl, waiting := start(t, fake, "")
	a, b := gpuPod("a", "g", 8), gpuPod("b", "g", 8)
	stateA, st, wait := cycle(t, pl, a)
	if st.Code() != fwk.Wait || wait != 7*time.Second || !strings.Contains(st.Message(), "1 of 2 members reserved") {
		t.Fatalf("first member: %v %q %v, want Wait for the permit timeout", st.Code(), st.Message(), wait)
	}
	wa := waiting.add(a)
	stateB, st, _ := cycle(t, pl, b)
	if !st.IsSuccess() || !wa.allowed {
		t.Fatalf("last member: %v, first allowed=%v; want both through", st, wa.allowed)
	}
	pl.PostBind(context.Background(), stateA, a, "n1")
	pl.PostBind(context.Background(), stateB, b, "n2")
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, _, binds := fake.calls()
		if len(binds) == 2 {
			for _, bd := range binds {
				if bd.GetGang() != "ns/g" || bd.GetGpus() != 8 || bd.GetCpu() != 2000 || bd.GetMemory() != 1<<30 {
					t.Fatalf("bind recorded as %v", bd)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostBind recorded %d binds, want 2", len(binds))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g := pl.barrier.gangOf(a.UID); g != "" {
		t.Fatalf("a bound gang is still tracked (%q)", g)
	}
}

func TestAMemberUnreservedRejectsTheWaitingGangAndReleasesItsReservation(t *testing.T) {
	fake := &fakeGangplace{answer: func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n-" + p.Name}, Gang: "ns/g", GangSize: 3, MinCount: 3}, nil
	}}
	pl, waiting := start(t, fake, "")
	a, b, other := gpuPod("a", "g", 8), gpuPod("b", "g", 8), gpuPod("o", "g", 8)
	_, _, _ = cycle(t, pl, a)
	wa := waiting.add(a)
	stateB, st, _ := cycle(t, pl, b)
	if st.Code() != fwk.Wait {
		t.Fatalf("second of three: %v, want Wait", st.Code())
	}
	waiting.add(b)
	pl.barrier.of[other.UID] = "ns/other" // a waiting pod of another gang stays untouched
	wo := waiting.add(other)
	// b's wait times out: the framework rejects it and calls Unreserve
	pl.Unreserve(context.Background(), stateB, b, "n-b")
	if wa.rejected == "" || !strings.Contains(wa.rejected, "rejected whole") {
		t.Fatalf("sibling a: rejected=%q, want rejected with the gang", wa.rejected)
	}
	if wo.rejected != "" {
		t.Fatalf("a pod of another gang was rejected: %q", wo.rejected)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, un, _ := fake.calls()
		if len(un) == 1 {
			if un[0].GetPodUid() != "uid-b" || un[0].GetGang() != "ns/g" || !un[0].GetReleaseGang() {
				t.Fatalf("Unreserve sent %v", un[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Unreserve never reached gangplace")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestElasticGangIsAllowedAtMinCount(t *testing.T) {
	fake := &fakeGangplace{answer: func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n-" + p.Name}, Gang: "ns/e", GangSize: 4, MinCount: 2}, nil
	}}
	pl, waiting := start(t, fake, "")
	_, st, _ := cycle(t, pl, gpuPod("a", "e", 8))
	if st.Code() != fwk.Wait {
		t.Fatalf("1 of min 2: %v, want Wait", st.Code())
	}
	wa := waiting.add(gpuPod("a", "e", 8))
	if _, st, _ = cycle(t, pl, gpuPod("b", "e", 8)); !st.IsSuccess() || !wa.allowed {
		t.Fatalf("2 of min 2: %v (a allowed=%v), want all through", st, wa.allowed)
	}
	if _, st, _ = cycle(t, pl, gpuPod("c", "e", 8)); !st.IsSuccess() {
		t.Fatalf("3rd member past min_count: %v, want Success at once", st)
	}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		wantErr string
		want    Args
	}{
		{"no args take the defaults", "", "", Args{Address: "127.0.0.1:50051", CallTimeoutSeconds: 5, PermitTimeoutSeconds: 60, GPUResource: "nvidia.com/gpu", SingleGPUPods: "score"}},
		{"given fields are kept", `{"address":"gp:1","callTimeoutSeconds":2,"permitTimeoutSeconds":30,"gpuResource":"amd.com/gpu","singleGPUPods":"skip"}`, "",
			Args{Address: "gp:1", CallTimeoutSeconds: 2, PermitTimeoutSeconds: 30, GPUResource: "amd.com/gpu", SingleGPUPods: "skip"}},
		{"an unknown single-pod mode names its field", `{"singleGPUPods":"maybe"}`, "singleGPUPods", Args{}},
		{"a negative call timeout names its field", `{"callTimeoutSeconds":-1}`, "callTimeoutSeconds", Args{}},
		{"a permit timeout over an hour names its field", `{"permitTimeoutSeconds":4000}`, "permitTimeoutSeconds", Args{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var obj runtime.Object
			if tc.raw != "" {
				obj = &runtime.Unknown{Raw: []byte(tc.raw), ContentType: runtime.ContentTypeJSON}
			}
			got, err := Parse(obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestAMemberThatDoesNotFitFailsFilterEverywhereSoPreemptionEvictsNothing(t *testing.T) {
	for _, verdict := range []pb.PlanMemberResponse_Verdict{pb.PlanMemberResponse_NOT_NOW, pb.PlanMemberResponse_NEVER} {
		t.Run(verdict.String(), func(t *testing.T) {
			pl, _ := start(t, &fakeGangplace{answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) {
				return &pb.PlanMemberResponse{Verdict: verdict, Reason: "needs one block", Gang: "ns/g"}, nil
			}}, "")
			state := framework.NewCycleState()
			pod := gpuPod("a", "g", 8)
			if _, st := pl.PreFilter(context.Background(), state, pod, nil); st.IsSuccess() {
				t.Fatal("PreFilter passed a member gangplace did not place")
			}
			// DefaultPreemption runs Filter on a clone of this state with victims removed
			for _, n := range []string{"n1", "n2"} {
				st := pl.Filter(context.Background(), state.Clone(), pod, nodeInfo(n))
				if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), "needs one block") {
					t.Fatalf("Filter(%s) = %v %q, want unresolvable with the reason", n, st.Code(), st.Message())
				}
			}
			if st := pl.Reserve(context.Background(), state, pod, "n1"); !st.IsSuccess() {
				t.Fatalf("Reserve of an unplaced member: %v", st)
			}
			if got := pl.barrier.gangOf(pod.UID); got != "" {
				t.Fatalf("an unplaced member was counted in the barrier of %q", got)
			}
		})
	}
}
