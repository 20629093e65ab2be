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
	planned   []string            // pod names, in call order
	claimed   [][]*pb.MemberClaim // each PlanMember call's claims, in call order
	preempt   func(pod *v1.Pod) *pb.PreemptMemberResponse
	preempts  []string // PreemptMember calls: pod names
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
	f.claimed = append(f.claimed, r.GetClaimed())
	delay := f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	return f.answer(&pod)
}

func (f *fakeGangplace) PreemptMember(_ context.Context, r *pb.PlanMemberRequest) (*pb.PreemptMemberResponse, error) {
	var pod v1.Pod
	if err := json.Unmarshal(r.GetPodJson(), &pod); err != nil {
		return nil, status.Error(codes.InvalidArgument, "pod_json: "+err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.preempts = append(f.preempts, pod.Name)
	return f.preempt(&pod), nil
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
	if _, _, binds := fake.calls(); len(binds) != 0 {
		t.Fatalf("PostBind sent %d BindPods records; gangplace learns binds from its watch", len(binds))
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
		{"no args take the defaults", "", "", Args{Address: "127.0.0.1:50051", CallTimeoutSeconds: 5, PermitTimeoutSeconds: 60, GPUResource: "nvidia.com/gpu", SingleGPUPods: "score", SinglePodAnswerMaxAgeSeconds: 0.1}},
		{"given fields are kept", `{"address":"gp:1","callTimeoutSeconds":2,"permitTimeoutSeconds":30,"gpuResource":"amd.com/gpu","singleGPUPods":"skip","singlePodAnswerMaxAgeSeconds":0}`, "",
			Args{Address: "gp:1", CallTimeoutSeconds: 2, PermitTimeoutSeconds: 30, GPUResource: "amd.com/gpu", SingleGPUPods: "skip"}},
		{"tls without a CA names its field", `{"tls":{"certFile":"c","keyFile":"k"}}`, "tls.caFile", Args{}},
		{"a client certificate without its key names both", `{"tls":{"caFile":"ca","certFile":"c"}}`, "tls.certFile and tls.keyFile", Args{}},
		{"a negative answer age names its field", `{"singlePodAnswerMaxAgeSeconds":-1}`, "singlePodAnswerMaxAgeSeconds", Args{}},
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

// planWholeGang answers PLACE for the first member of gang "ns/w" (size 4) with its node and
// the gang's three other free slots, as gangplace does; a later call (a cache miss) gets the
// next slot not claimed, with no free slots left to hand out.
func planWholeGang(nodes []string) func(*v1.Pod) (*pb.PlanMemberResponse, error) {
	next := 0
	return func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
		resp := &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{nodes[next]},
			Gang: "ns/w", GangSize: int32(len(nodes)), MinCount: int32(len(nodes)), PlanTtlS: 30,
			GangPodSet: &pb.PodSet{Name: "w", Count: int32(len(nodes)), Gpus: 8, Cpu: 2000, Memory: 1 << 30}}
		for i := next + 1; i < len(nodes); i++ {
			resp.GangSlots = append(resp.GangSlots, &pb.PodAssignment{PodSet: "w", Index: int32(i), Node: nodes[i]})
		}
		next = len(nodes) - 1
		return resp, nil
	}
}

func wPod(name string) *v1.Pod {
	p := gpuPod(name, "w", 8)
	p.Labels["gangplace.dev/size"] = "4"
	return p
}

func TestOneCallPerGangTheOtherMembersReadTheCachedPlan(t *testing.T) {
	nodes := []string{"n0", "n1", "n2", "n3"}
	fake := &fakeGangplace{answer: planWholeGang(nodes)}
	pl, waiting := start(t, fake, "")
	b := wPod("b")
	b.Labels[completionIndexKey] = "3" // an Indexed Job member takes the slot at its index
	got := map[string]string{}
	for i, pod := range []*v1.Pod{wPod("a"), b, wPod("c"), wPod("d")} {
		state, st, _ := cycle(t, pl, pod)
		p := readPlan(state)
		got[pod.Name] = p.node
		if p.gang != "ns/w" || p.need != 4 || p.size != 4 {
			t.Fatalf("%s: plan %+v", pod.Name, p)
		}
		if i < 3 {
			if st.Code() != fwk.Wait {
				t.Fatalf("%s: %v, want Wait at the barrier", pod.Name, st)
			}
			waiting.add(pod)
		} else if !st.IsSuccess() {
			t.Fatalf("last member: %v", st)
		}
	}
	want := map[string]string{"a": "n0", "b": "n3", "c": "n1", "d": "n2"}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("members went to %v, want %v", got, want)
		}
	}
	if planned, _, _ := fake.calls(); len(planned) != 1 {
		t.Fatalf("%d PlanMember calls for a gang of 4, want 1 (%v)", len(planned), planned)
	}
	// a repeated PreFilter of a member (a retry) gets the same node, still without a call
	state := framework.NewCycleState()
	if res, st := pl.PreFilter(context.Background(), state, wPod("c"), nil); !st.IsSuccess() || !res.NodeNames.Has("n1") {
		t.Fatalf("retry of c: %v %v, want n1", res, st)
	}
	for _, pod := range []*v1.Pod{wPod("a"), b, wPod("c"), wPod("d")} {
		pl.PostBind(context.Background(), state, pod, got[pod.Name])
	}
	if n := pl.plans.len(); n != 0 {
		t.Fatalf("%d plans cached after the gang bound whole, want 0", n)
	}
}

func TestACachedPlanEndsWithItsReservation(t *testing.T) {
	nodes := []string{"n0", "n1", "n2", "n3"}
	t.Run("unreserved: the next member asks again", func(t *testing.T) {
		fake := &fakeGangplace{answer: planWholeGang(nodes)}
		pl, _ := start(t, fake, "")
		stateA, _, _ := cycle(t, pl, wPod("a"))
		pl.Unreserve(context.Background(), stateA, wPod("a"), "n0")
		cycle(t, pl, wPod("b"))
		if planned, _, _ := fake.calls(); len(planned) != 2 {
			t.Fatalf("calls %v, want a second call after Unreserve", planned)
		}
	})
	t.Run("expired: the next member asks again, naming the reserved members", func(t *testing.T) {
		fake := &fakeGangplace{answer: planWholeGang(nodes)}
		pl, _ := start(t, fake, "")
		now := time.Now()
		pl.plans.now = func() time.Time { return now }
		cycle(t, pl, wPod("a"))
		cycle(t, pl, wPod("b"))
		now = now.Add(16 * time.Second) // past half the reservation's 30 s
		state, _, _ := cycle(t, pl, wPod("c"))
		planned, _, _ := fake.calls()
		if len(planned) != 2 || planned[1] != "c" {
			t.Fatalf("calls %v, want a, c", planned)
		}
		fake.mu.Lock()
		claims := fake.claimed[1]
		fake.mu.Unlock()
		have := map[string]string{}
		for _, c := range claims {
			have[c.GetPodUid()] = c.GetNode()
		}
		if len(have) != 2 || have["uid-a"] != "n0" || have["uid-b"] != "n1" {
			t.Fatalf("claims sent %v, want a on n0 and b on n1", have)
		}
		if readPlan(state).node != "n3" {
			t.Fatalf("c went to %s, want gangplace's answer n3", readPlan(state).node)
		}
	})
	t.Run("a member asking for more than a slot asks gangplace", func(t *testing.T) {
		fake := &fakeGangplace{answer: planWholeGang(nodes)}
		pl, _ := start(t, fake, "")
		cycle(t, pl, wPod("a"))
		big := wPod("big")
		big.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("3")
		pl.PreFilter(context.Background(), framework.NewCycleState(), big, nil)
		if planned, _, _ := fake.calls(); len(planned) != 2 {
			t.Fatalf("calls %v, want a call for the bigger member", planned)
		}
	})
	t.Run("a rejection drops the plan", func(t *testing.T) {
		calls := 0
		fake := &fakeGangplace{}
		whole := planWholeGang(nodes)
		fake.answer = func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
			calls++
			if calls == 2 {
				return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_NOT_NOW, Gang: "ns/w", Reason: "no"}, nil
			}
			return whole(p)
		}
		pl, _ := start(t, fake, "")
		cycle(t, pl, wPod("a"))
		big := wPod("big")
		big.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("9")
		pl.PreFilter(context.Background(), framework.NewCycleState(), big, nil)
		if pl.plans.len() != 0 {
			t.Fatal("the plan survived a rejection")
		}
	})
}

func TestGangKeyMatchesGangplacesReading(t *testing.T) {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"scheduling.x-k8s.io/pod-group": " pg "},
		Annotations: map[string]string{"gangplace.dev/gang": "ann"}}}
	if k := gangKey(p); k != "default/ann" { // gangplace.dev/gang first, from the annotation when no label
		t.Fatalf("gangKey = %q", k)
	}
	p.Labels["gangplace.dev/gang"] = ""
	if k := gangKey(p); k != "default/pg" { // an empty label hides the annotation and names no gang
		t.Fatalf("gangKey = %q", k)
	}
	if k := gangKey(&v1.Pod{}); k != "" {
		t.Fatalf("gangKey of a pod of no gang = %q", k)
	}
}

func TestThePodJSONCarriesWhatGangplaceReadsOnly(t *testing.T) {
	pod := gpuPod("a", "g", 8)
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Spec.Containers[0].Image = "big/image:1"
	always := v1.ContainerRestartPolicyAlways
	pod.Spec.InitContainers = []v1.Container{{Name: "side", RestartPolicy: &always, Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m")}}}}
	prio := int32(7)
	pod.Spec.Priority = &prio
	pod.Status.NominatedNodeName = "n9"
	body, err := podJSON(pod)
	if err != nil {
		t.Fatal(err)
	}
	var back v1.Pod
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatal(err)
	}
	if back.UID != pod.UID || back.Labels["gangplace.dev/gang"] != "g" || *back.Spec.Priority != 7 ||
		back.Status.NominatedNodeName != "n9" || back.Spec.InitContainers[0].RestartPolicy == nil {
		t.Fatalf("lost a field gangplace reads: %s", body)
	}
	if got := requests(&back); got.Cpu().MilliValue() != 2500 || gpusOf(got) != 8 {
		t.Fatalf("requests after the round trip: %v", got)
	}
	if strings.Contains(string(body), "kubectl") || strings.Contains(string(body), "big/image") {
		t.Fatalf("sent fields gangplace does not read: %s", body)
	}
}

func gpusOf(req v1.ResourceList) int64 { q := req["nvidia.com/gpu"]; return q.Value() }

func TestAnAnswerForPodsOfNoGangIsReusedUntilAGangCallOrItsMaxAge(t *testing.T) {
	fake := &fakeGangplace{answer: func(p *v1.Pod) (*pb.PlanMemberResponse, error) {
		if isGangMember(p) {
			return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1"}, Gang: "ns/g", GangSize: 2, MinCount: 2}, nil
		}
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1", "n2"}, Scores: map[string]int32{"n1": 80, "n2": 20}}, nil
	}}
	pl, _ := start(t, fake, "")
	now := time.Now()
	pl.singles.now = func() time.Time { return now }
	calls := func() int { p, _, _ := fake.calls(); return len(p) }
	single := func(name string, gpus int64) {
		t.Helper()
		state := framework.NewCycleState()
		res, st := pl.PreFilter(context.Background(), state, gpuPod(name, "", gpus), nil)
		if !st.IsSuccess() || res.NodeNames.Len() != 2 {
			t.Fatalf("%s: %v %v", name, res, st)
		}
		if s, _ := pl.Score(context.Background(), state, gpuPod(name, "", gpus), nodeInfo("n1")); s != 80 {
			t.Fatalf("%s: score %d on n1, want gangplace's 80", name, s)
		}
	}
	single("s1", 1)
	single("s2", 1)
	if calls() != 1 {
		t.Fatalf("%d calls for two pods of one shape within the max age, want 1", calls())
	}
	single("s3", 2) // another shape: its own answer
	if calls() != 2 {
		t.Fatalf("%d calls, want 2 (a second shape)", calls())
	}
	pl.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("m", "g", 8), nil) // a gang is planned
	single("s4", 1)
	if calls() != 4 {
		t.Fatalf("%d calls, want 4: a gang member's call clears the reused answers", calls())
	}
	pl.PostFilter(context.Background(), framework.NewCycleState(), gpuPod("s5", "", 1), nil)
	single("s5", 1)
	if calls() != 5 {
		t.Fatalf("%d calls, want 5: a pod that fit nowhere clears them", calls())
	}
	now = now.Add(100 * time.Millisecond)
	single("s6", 1)
	if calls() != 6 {
		t.Fatalf("%d calls, want 6: the answer aged out", calls())
	}
	pl.singles.maxAge = 0
	single("s7", 1)
	single("s8", 1)
	if calls() != 8 {
		t.Fatalf("%d calls, want 8: max age 0 asks for every pod", calls())
	}
}

// fakeVictims is the cluster's pods for preemption: present until deleted.
type fakeVictims struct {
	mu      sync.Mutex
	pods    map[string]*v1.Pod
	deleted []string
}

func (f *fakeVictims) present(uids []string) []*v1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*v1.Pod
	for _, u := range uids {
		if p, ok := f.pods[u]; ok {
			out = append(out, p)
		}
	}
	return out
}

func (f *fakeVictims) delete(_ context.Context, p *v1.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, p.Name)
	return nil
}

func (f *fakeVictims) gone(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, p := range f.pods {
		for _, n := range names {
			if p.Name == n {
				delete(f.pods, u)
			}
		}
	}
}

func TestAGangThatDoesNotFitPreemptsLowerPriorityGangsWholeOnce(t *testing.T) {
	fake := &fakeGangplace{
		answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) {
			return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_NOT_NOW, Reason: "needs one block", Gang: "ns/high"}, nil
		},
		preempt: func(*v1.Pod) *pb.PreemptMemberResponse {
			return &pb.PreemptMemberResponse{Feasible: true, Victims: []*pb.Victim{{Gang: "ns/low", Priority: 0, Gpus: 16}},
				VictimPods: []string{"uid-low-0", "uid-low-1"}, Nodes: []string{"n1", "n2"}}
		},
	}
	pl, _ := start(t, fake, "")
	victims := &fakeVictims{pods: map[string]*v1.Pod{"uid-low-0": gpuPod("low-0", "low", 8), "uid-low-1": gpuPod("low-1", "low", 8),
		"uid-other": gpuPod("other", "", 1)}}
	pl.victims = victims
	postFilter := func(name string) *fwk.Status {
		state := framework.NewCycleState()
		pod := gpuPod(name, "high", 8)
		if _, st := pl.PreFilter(context.Background(), state, pod, nil); st.Code() != fwk.Unschedulable {
			t.Fatalf("PreFilter %s: %v, want Unschedulable", name, st)
		}
		res, st := pl.PostFilter(context.Background(), state, pod, nil)
		if res != nil || st.Code() != fwk.Unschedulable {
			t.Fatalf("PostFilter %s: %v %v, want Unschedulable without a nomination", name, res, st)
		}
		return st
	}
	st := postFilter("high-0")
	if !strings.Contains(st.Message(), "evicting 2 pods of lower-priority gang(s) ns/low") {
		t.Fatalf("message %q", st.Message())
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		victims.mu.Lock()
		n := len(victims.deleted)
		victims.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted %v, want low-0 and low-1", victims.deleted)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// the next member, while the victims terminate: no second plan, nothing more evicted
	if st := postFilter("high-1"); !strings.Contains(st.Message(), "waiting for the pods evicted") {
		t.Fatalf("second member: %q", st.Message())
	}
	if len(fake.preempts) != 1 {
		t.Fatalf("PreemptMember calls %v, want one while the victims are still there", fake.preempts)
	}
	victims.gone("low-0", "low-1") // gone, and the gang still does not fit: gangplace is asked again
	postFilter("high-2")
	if len(fake.preempts) != 2 || len(victims.deleted) != 2 {
		t.Fatalf("after the victims went: calls %v, deleted %v", fake.preempts, victims.deleted)
	}
}

func TestNoPreemptionForPodsThatMayNotPreemptOrThatCanNeverFit(t *testing.T) {
	never := v1.PreemptNever
	for _, tc := range []struct {
		name    string
		verdict pb.PlanMemberResponse_Verdict
		policy  *v1.PreemptionPolicy
	}{{"a gang that can never fit", pb.PlanMemberResponse_NEVER, nil}, {"preemptionPolicy Never", pb.PlanMemberResponse_NOT_NOW, &never}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeGangplace{answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) {
				return &pb.PlanMemberResponse{Verdict: tc.verdict, Reason: "no", Gang: "ns/high"}, nil
			}, preempt: func(*v1.Pod) *pb.PreemptMemberResponse { return &pb.PreemptMemberResponse{Feasible: true} }}
			pl, _ := start(t, fake, "")
			pl.victims = &fakeVictims{pods: map[string]*v1.Pod{}}
			state := framework.NewCycleState()
			pod := gpuPod("high-0", "high", 8)
			pod.Spec.PreemptionPolicy = tc.policy
			pl.PreFilter(context.Background(), state, pod, nil)
			if _, st := pl.PostFilter(context.Background(), state, pod, nil); st.Code() != fwk.Unschedulable || len(fake.preempts) != 0 {
				t.Fatalf("%v, %d PreemptMember calls; want none", st, len(fake.preempts))
			}
		})
	}
}
