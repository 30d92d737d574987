package tap

// This file holds what link setup of a port in a network namespace shares
// with every OS, so that callers compile everywhere: NetnsID, a
// namespace's identity. link_linux.go implements InNetns and NetnsIDOf;
// link_other.go returns ErrUnsupported from each.

// NetnsID identifies a network namespace: the device and inode of its
// nsfs file, the same for every path that names it (/run/netns/NAME,
// /proc/PID/ns/net of a process in it). It is comparable; the zero value
// means unknown. A namespace's ID is not reused while the namespace exists;
// once it is destroyed, a new namespace may get it again.
type NetnsID struct{ dev, ino uint64 }
