"""gangplace service layer: the gRPC server, the HTTP kube-scheduler extender, Kubernetes sync and
the CLI. Adapters only: placement logic lives in gangplace.engine."""
