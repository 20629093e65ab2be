// Package multicall picks which component a multi-call binary runs: the basename of argv[0]
// when it names a known component (a symlink such as .kube/bin/kube-apiserver), else the first
// argument as a subcommand (`kube kube-apiserver --etcd-servers=...`).
package multicall

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Resolve returns the component to run and the argv it should see (argv[0] set to the component's
// name, then its own arguments). known holds the component names.
func Resolve(argv []string, known map[string]bool) (string, []string, error) {
	if len(argv) == 0 {
		return "", nil, fmt.Errorf("empty argv")
	}
	base := strings.TrimSuffix(filepath.Base(argv[0]), ".exe")
	if known[base] {
		return base, append([]string{base}, argv[1:]...), nil
	}
	if len(argv) > 1 && known[argv[1]] {
		return argv[1], append([]string{argv[1]}, argv[2:]...), nil
	}
	return "", nil, fmt.Errorf("usage: %s COMPONENT [ARGS...] (or run it through a link named after the component); components: %s",
		base, strings.Join(Names(known), ", "))
}

// Names lists the known components, sorted.
func Names(known map[string]bool) []string {
	names := make([]string, 0, len(known))
	for name := range known {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
