// Command ovlsw-cni is a CNI plugin (spec 1.0 and 1.1) that puts a
// container's network namespace on an ovlsw overlay network through the
// node's ovlsw daemon. Install it in the runtime's CNI plugin directory
// (/opt/cni/bin) and use "type": "ovlsw-cni"; plugin.go documents the
// network config and what each command does.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus,
		// GC is left out: skel answers it with success (see plugin.go).
	}, cniversion.VersionsStartingFrom("1.0.0"), "CNI plugin ovlsw-cni "+version)
}
