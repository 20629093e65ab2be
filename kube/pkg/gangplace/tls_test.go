package gangplace

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	pb "github.com/gangplace/gangplace/kube/gen/gangplacev1"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	dir                 string
	ca                  *x509.Certificate
	caKey               *ecdsa.PrivateKey
	caFile              string
	serverCert          tls.Certificate
	clientCrt, clientKy string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	sDER, sKey := p.issue(t, 2, "gangplace", x509.ExtKeyUsageServerAuth)
	p.serverCert = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := p.issue(t, 3, "system:kube-scheduler", x509.ExtKeyUsageClientAuth)
	p.clientCrt = p.write(t, "client.crt", "CERTIFICATE", cDER)
	kb, _ := x509.MarshalECPrivateKey(cKey)
	p.clientKy = p.write(t, "client.key", "EC PRIVATE KEY", kb)
	return p
}

func (p *pki) issue(t *testing.T, serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveMTLS serves fake over mutual TLS (client certificates required, signed by p's CA).
func serveMTLS(t *testing.T, p *pki, fake *fakeGangplace) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	pb.RegisterGangplaceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func tlsPlugin(t *testing.T, addr string, a *TLSArgs) *Plugin {
	t.Helper()
	args := Args{Address: addr, CallTimeoutSeconds: 2, PermitTimeoutSeconds: 5, GPUResource: "nvidia.com/gpu", SingleGPUPods: "score", TLS: a}
	creds, err := transport(args)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	pl := newPlugin(args, conn, pb.NewGangplaceClient(conn), nil)
	t.Cleanup(func() { _ = pl.Close() })
	return pl
}

func TestTheConnectionToGangplaceCanUseMutualTLS(t *testing.T) {
	p := newPKI(t)
	fake := &fakeGangplace{answer: func(*v1.Pod) (*pb.PlanMemberResponse, error) {
		return &pb.PlanMemberResponse{Verdict: pb.PlanMemberResponse_PLACE, Nodes: []string{"n1"}, Gang: "ns/g", GangSize: 2, MinCount: 2}, nil
	}}
	addr := serveMTLS(t, p, fake)
	pl := tlsPlugin(t, addr, &TLSArgs{CAFile: p.caFile, CertFile: p.clientCrt, KeyFile: p.clientKy})
	if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("a", "g", 8), nil); !st.IsSuccess() {
		t.Fatalf("over mutual TLS: %v", st.AsError())
	}
	// without a client certificate the server refuses the handshake: the member waits with the reason
	noCert := tlsPlugin(t, addr, &TLSArgs{CAFile: p.caFile})
	if _, st := noCert.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("b", "g", 8), nil); st.Code() != fwk.Error ||
		!strings.Contains(st.Message(), "gangplace unreachable") {
		t.Fatalf("without a client certificate: %v %q, want unreachable", st.Code(), st.Message())
	}
	// a server whose certificate another CA signed is not trusted
	other := newPKI(t)
	untrusted := tlsPlugin(t, addr, &TLSArgs{CAFile: other.caFile, CertFile: p.clientCrt, KeyFile: p.clientKy})
	if _, st := untrusted.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("c", "g", 8), nil); st.Code() != fwk.Error {
		t.Fatalf("an untrusted server: %v, want an error", st.Code())
	}
	if planned, _, _ := fake.calls(); len(planned) != 1 {
		t.Fatalf("%d calls reached gangplace, want only the mutual-TLS one", len(planned))
	}
}

func TestTLSArgsAreChecked(t *testing.T) {
	if _, err := transport(Args{TLS: &TLSArgs{CAFile: filepath.Join(t.TempDir(), "missing.crt")}}); err == nil ||
		!strings.Contains(err.Error(), "tls.caFile") {
		t.Fatalf("a missing CA file: %v", err)
	}
}
