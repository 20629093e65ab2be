// Command kube is a multi-call binary holding a Kubernetes v1.36.3 control plane for gangplace's
// end-to-end tests: kube-apiserver, kube-scheduler, kube-controller-manager, kubectl and etcd, and
// the gangplace-scheduler (kube-scheduler with the Gangplace plugin, pkg/gangplace).
// It runs the component named by argv[0]'s basename (make kube links each name to it) or by its
// first argument. One component per process: the apiserver's signal context, the feature gates
// and the flag sets are process-global.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json, as upstream mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // build-info metric, as upstream mains
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/gangplace/gangplace/kube/pkg/gangplace"
	"github.com/gangplace/gangplace/kube/pkg/multicall"
)

// components maps each name to a function that runs it with os.Args already set to its argv and
// returns the process exit code.
var components = map[string]func() int{
	"kube-apiserver": func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-scheduler": func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"gangplace-scheduler": func() int {
		return cli.Run(scheduler.NewSchedulerCommand(scheduler.WithPlugin(gangplace.Name, gangplace.New)))
	},
	"kube-controller-manager": func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	},
	"kubectl": func() int {
		// as upstream cmd/kubectl: errors are printed by CheckErr, which exits non-zero
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	},
	"etcd": func() int {
		etcdmain.Main(os.Args) // exits the process itself on error
		return 0
	},
}

func main() {
	known := make(map[string]bool, len(components))
	for name := range components {
		known[name] = true
	}
	name, argv, err := multicall.Resolve(os.Args, known)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Args = argv
	os.Exit(components[name]())
}
