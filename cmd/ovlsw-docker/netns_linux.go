package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// errNoLink: no link with the MAC in the namespace (yet).
var errNoLink = errors.New("no link with that MAC")

// linkByMAC is the name of the link with MAC mac in the network namespace
// at path.
func linkByMAC(path, mac string) (string, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return "", err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return "", fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), want.String()) {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("%s in %s: %w", mac, path, errNoLink)
}
