package fdb

import "slices"

// Names are the DNS names of an endpoint, carried with its binding: the
// control plane sets them on an attached endpoint's entry and gossip
// carries them to every node. An entry holds a *Names that nobody modifies
// once set, so readers share it without copying.
type Names struct {
	Name    string   // the endpoint's name, unique in its network
	Aliases []string // more names, as unique
	Service string   // the service it belongs to; "" for none
}

// Equal reports whether n and o hold the same names (nil equals nil only).
func (n *Names) Equal(o *Names) bool {
	if n == nil || o == nil {
		return n == o
	}
	return n.Name == o.Name && n.Service == o.Service && slices.Equal(n.Aliases, o.Aliases)
}
