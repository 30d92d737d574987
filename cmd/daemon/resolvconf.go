package daemon

// This file holds the resolver configuration attach writes for a named
// network namespace: /etc/netns/NAME/resolv.conf, which `ip netns exec
// NAME` mounts over /etc/resolv.conf, so that a container's resolver asks
// its networks' DNS addresses (answered by the switch) and searches their
// names. The file lists every network of the namespace's endpoints that
// has a DNS address; it is rewritten on each attach and detach there and
// removed with the last one. A file ovlsw did not write is left alone.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// resolvConfMark opens every resolv.conf attach writes: a file without it
// is the operator's.
const resolvConfMark = "# Written by ovlsw for the endpoints of this namespace; removed when the last detaches.\n"

// resolvConfDir returns the directory of netns's resolv.conf, or "" for a
// namespace given by path (which `ip netns exec` does not know).
func (e *endpoints) resolvConfDir(netns string) string {
	if netns == "" || strings.ContainsRune(netns, '/') || netns == "." || netns == ".." {
		return ""
	}
	return filepath.Join(cmp.Or(e.cfg.NetnsEtc, "/etc/netns"), netns)
}

// resolvConf returns the resolv.conf for endpoints eps of one namespace;
// nil if none has a DNS address.
func resolvConf(eps []endpoint) []byte {
	var servers []netip.Addr
	var search []string
	slices.SortFunc(eps, func(a, b endpoint) int { return cmp.Compare(a.Network, b.Network) })
	for _, ep := range eps {
		if !ep.DNS.IsValid() {
			continue
		}
		if !slices.Contains(servers, ep.DNS) {
			servers = append(servers, ep.DNS)
		}
		if !slices.Contains(search, ep.Network) {
			search = append(search, ep.Network)
		}
	}
	if len(servers) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString(resolvConfMark)
	for _, s := range servers[:min(len(servers), 3)] { // resolv.conf(5): at most 3 are used
		fmt.Fprintf(&b, "nameserver %v\n", s)
	}
	fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	return b.Bytes()
}

// syncResolvConfLocked rewrites netns's resolv.conf from its endpoints that
// asked for one, or removes it when none is left. It reports whether the
// file is ovlsw's now. Called with e.mu held.
func (e *endpoints) syncResolvConfLocked(netns string) bool {
	dir := e.resolvConfDir(netns)
	if dir == "" {
		return false
	}
	var eps []endpoint
	for _, a := range e.byPort {
		if a.ep.Netns == netns && a.ep.ResolvConf {
			eps = append(eps, a.ep)
		}
	}
	path := filepath.Join(dir, "resolv.conf")
	old, err := os.ReadFile(path)
	switch {
	case err == nil && !bytes.HasPrefix(old, []byte(resolvConfMark)):
		if len(eps) > 0 {
			e.log.Info("namespace has a resolv.conf of its own: left as it is", "path", path)
		}
		return false
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		e.log.Warn("resolv.conf of namespace not read", "path", path, "err", err)
		return false
	}
	want := resolvConf(eps)
	if want == nil {
		if err == nil {
			if err := os.Remove(path); err != nil {
				e.log.Warn("remove resolv.conf of namespace", "path", path, "err", err)
			}
			os.Remove(dir) // only if empty: anything else there is someone's
		}
		return false
	}
	if bytes.Equal(old, want) {
		return true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.log.Warn("resolv.conf of namespace not written", "path", path, "err", err)
		return false
	}
	tmp := path + ".ovlsw-tmp"
	if err := os.WriteFile(tmp, want, 0o644); err != nil {
		e.log.Warn("resolv.conf of namespace not written", "path", path, "err", err)
		return false
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		e.log.Warn("resolv.conf of namespace not written", "path", path, "err", err)
		return false
	}
	return true
}

// removeResolvConfsLocked removes every resolv.conf written for the
// endpoints, as they all go (Close). Called with e.mu held.
func (e *endpoints) removeResolvConfsLocked() {
	done := map[string]bool{}
	for _, a := range e.byPort {
		if !a.ep.ResolvConf || done[a.ep.Netns] {
			continue
		}
		done[a.ep.Netns] = true
		dir := e.resolvConfDir(a.ep.Netns)
		path := filepath.Join(dir, "resolv.conf")
		if b, err := os.ReadFile(path); err == nil && bytes.HasPrefix(b, []byte(resolvConfMark)) {
			os.Remove(path)
			os.Remove(dir)
		}
	}
}
