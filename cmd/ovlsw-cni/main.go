// Command ovlsw-cni is a CNI plugin (spec 0.3.0 to 1.1.0) that puts a
// container's network namespace on an ovlsw overlay network through the
// node's ovlsw daemon. Install it in the runtime's CNI plugin directory
// (/opt/cni/bin) and use "type": "ovlsw-cni"; plugin.go documents the
// network config and what each command does.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// supportedVersions are the spec versions the plugin answers: every one a
// current runtime may send (Podman 4's CNI backend and many shipped
// configs still say 0.4.0 or 0.3.1).
var supportedVersions = cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus,
		// GC is left out: skel answers it with success (see plugin.go).
	}, supportedVersions, "CNI plugin ovlsw-cni "+version)
}
