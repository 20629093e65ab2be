package multicall

import (
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	known := map[string]bool{"kube-apiserver": true, "etcd": true, "kubectl": true}
	cases := []struct {
		name     string
		argv     []string
		wantName string
		wantArgv []string
		wantErr  bool
	}{
		{"a link named after a component runs it with its own arguments",
			[]string{"/repo/.kube/bin/kube-apiserver", "--secure-port=0"}, "kube-apiserver",
			[]string{"kube-apiserver", "--secure-port=0"}, false},
		{"the first argument names the component when argv[0] does not",
			[]string{"/repo/.kube/bin/kube", "etcd", "--data-dir", "/tmp/x"}, "etcd",
			[]string{"etcd", "--data-dir", "/tmp/x"}, false},
		{"argv[0] wins over a first argument that is also a component",
			[]string{"kubectl", "etcd"}, "kubectl", []string{"kubectl", "etcd"}, false},
		{"a bare call without a component is an error", []string{"kube"}, "", nil, true},
		{"an unknown component is an error", []string{"kube", "kubelet"}, "", nil, true},
		{"an empty argv is an error", nil, "", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gotName, gotArgv, err := Resolve(tc.argv, known)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if gotName != tc.wantName || !reflect.DeepEqual(gotArgv, tc.wantArgv) {
				t.Fatalf("Resolve(%q) = %q %q, want %q %q", tc.argv, gotName, gotArgv, tc.wantName, tc.wantArgv)
			}
		})
	}
}

func TestNamesAreSorted(t *testing.T) {
	got := Names(map[string]bool{"kubectl": true, "etcd": true, "kube-apiserver": true})
	want := []string{"etcd", "kube-apiserver", "kubectl"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Names = %q, want %q", got, want)
	}
}
