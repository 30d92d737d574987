// Package offload holds the pure functions of the TAP offload path: the
// Internet checksum, the virtio_net_hdr that a TAP opened with IFF_VNET_HDR
// puts before every frame, checksum completion and TCP segmentation of the
// super-frames such a TAP returns (send path), and userspace GRO that builds
// super-frames for it (receive path). Nothing here makes a syscall, takes a
// lock or allocates on the per-frame path; a Segmenter or a GRO belongs to one
// goroutine.
//
// Files: checksum.go (RFC 1071 sum, pseudo-headers), virtio.go (the header,
// completeChecksum), segment.go (Segmenter), gro.go (GRO), frame.go (the
// Ethernet/IP/TCP offsets both directions parse), errors.go (the error
// kinds: ErrShort, ErrMalformed, ErrUnsupported).
package offload
