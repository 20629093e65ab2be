package gangplace

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
)

// Args are the plugin's arguments (pluginConfig of the KubeSchedulerConfiguration, name
// Gangplace). Defaults are filled and every field is checked in one place, Parse; each error
// names its field.
type Args struct {
	// Address of gangplace's gRPC API (gangplace.v1), host:port. Plaintext unless TLS is set:
	// run gangplace beside the scheduler (same pod, loopback), or set TLS.
	Address string `json:"address"`
	// TLS for the connection (gangplace's `tls:` config, service/tls.py): the server's
	// certificate is verified against CAFile; CertFile/KeyFile are the scheduler's client
	// certificate for mutual TLS (gangplace's tls.client_ca / require_client_cert).
	TLS *TLSArgs `json:"tls,omitempty"`
	// CallTimeoutSeconds bounds every call to gangplace (PreFilter waits at most this long).
	CallTimeoutSeconds float64 `json:"callTimeoutSeconds"`
	// PermitTimeoutSeconds is how long a reserved member waits at Permit for the rest of its
	// gang (or its min_count) before the whole gang is rejected and its reservation released.
	PermitTimeoutSeconds float64 `json:"permitTimeoutSeconds"`
	// GPUResource is the extended resource gangplace manages; pods without it are skipped.
	GPUResource string `json:"gpuResource"`
	// SingleGPUPods: "score" (default) asks gangplace once per GPU pod of no gang for the nodes
	// no gang's reservation holds and its best-fit scores; "skip" leaves such pods to the
	// framework's plugins alone (no call: the stock scheduler's rate, but they may take capacity
	// reserved for a gang's members not yet arrived).
	SingleGPUPods string `json:"singleGPUPods"`
	// SinglePodAnswerMaxAgeSeconds: with singleGPUPods "score", gangplace's answer for GPU pods
	// of no gang (per requests) is reused for this long (default 0.1), so a backlog of such pods
	// costs one call per interval instead of one per pod; a PlanMember call for a gang member, an
	// Unreserve, or a pod that fits nowhere clears it (see singleCache). 0: one call per pod.
	SinglePodAnswerMaxAgeSeconds float64 `json:"singlePodAnswerMaxAgeSeconds"`
}

// TLSArgs are the plugin's TLS settings; PEM file paths.
type TLSArgs struct {
	CAFile     string `json:"caFile"`               // CA bundle the server's certificate must chain to (required)
	CertFile   string `json:"certFile,omitempty"`   // client certificate (mutual TLS), with KeyFile
	KeyFile    string `json:"keyFile,omitempty"`    // its private key
	ServerName string `json:"serverName,omitempty"` // name to verify in the server's certificate (default: Address's host)
}

const (
	defaultAddress       = "127.0.0.1:50051"
	defaultCallTimeout   = 5.0
	defaultPermitTimeout = 60.0
	defaultGPUResource   = "nvidia.com/gpu"
	defaultSingleMaxAge  = 0.1
)

// Parse decodes the plugin's configuration object (nil: all defaults), fills defaults and
// validates.
func Parse(obj runtime.Object) (Args, error) {
	a := Args{SinglePodAnswerMaxAgeSeconds: defaultSingleMaxAge} // absent: the default; 0 stays 0
	if obj != nil {
		if err := frameworkruntime.DecodeInto(obj, &a); err != nil {
			return a, fmt.Errorf("gangplace plugin args: %w", err)
		}
	}
	if a.Address == "" {
		a.Address = defaultAddress
	}
	if a.CallTimeoutSeconds == 0 {
		a.CallTimeoutSeconds = defaultCallTimeout
	}
	if a.PermitTimeoutSeconds == 0 {
		a.PermitTimeoutSeconds = defaultPermitTimeout
	}
	if a.GPUResource == "" {
		a.GPUResource = defaultGPUResource
	}
	if a.SingleGPUPods == "" {
		a.SingleGPUPods = "score"
	}
	if a.SingleGPUPods != "score" && a.SingleGPUPods != "skip" {
		return a, fmt.Errorf("singleGPUPods: must be \"score\" or \"skip\", got %q", a.SingleGPUPods)
	}
	if t := a.TLS; t != nil {
		if t.CAFile == "" {
			return a, fmt.Errorf("tls.caFile: required when tls is set (the CA that signed gangplace's certificate)")
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			return a, fmt.Errorf("tls.certFile and tls.keyFile: give both (mutual TLS) or neither")
		}
	}
	if a.CallTimeoutSeconds < 0 || a.CallTimeoutSeconds > 60 {
		return a, fmt.Errorf("callTimeoutSeconds: must be in (0, 60], got %g", a.CallTimeoutSeconds)
	}
	if a.SinglePodAnswerMaxAgeSeconds < 0 || a.SinglePodAnswerMaxAgeSeconds > 10 {
		return a, fmt.Errorf("singlePodAnswerMaxAgeSeconds: must be in [0, 10], got %g", a.SinglePodAnswerMaxAgeSeconds)
	}
	if a.PermitTimeoutSeconds < 0 || a.PermitTimeoutSeconds > 3600 {
		return a, fmt.Errorf("permitTimeoutSeconds: must be in (0, 3600], got %g", a.PermitTimeoutSeconds)
	}
	return a, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
