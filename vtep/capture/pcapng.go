package capture

// This file holds the pcapng writer `ovlsw capture` streams: the section
// and interface headers from gopacket's pcapgo.NgWriter, and each packet
// as an Enhanced Packet Block with the options NgWriter (gopacket v1.1.19)
// cannot write: epb_flags with the direction, and a comment naming the
// capture point and the drop reason. Wireshark and tshark show both
// (frame.comment, frame.packet_flags_direction).

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapng block and option codes (draft-ietf-opsawg-pcapng).
const (
	blockEPB       = 6
	optEnd         = 0
	optComment     = 1
	optEPBFlags    = 2
	epbFlagsLength = 4
)

// Writer writes captured records as pcapng.
type Writer struct {
	w     *bufio.Writer
	buf   []byte
	names func(port int) string
}

// NewWriter writes the section header and one Ethernet interface named
// name (the capture's filter, e.g. "ovlsw port ep1") with snap length
// snap to w. portName names ports in packet comments.
func NewWriter(w io.Writer, name string, snap int, portName func(int) string) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	intf := pcapgo.DefaultNgInterface
	intf.Name, intf.Description, intf.LinkType, intf.SnapLength = name, "ovlsw capture point", layers.LinkTypeEthernet, uint32(snap)
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = "ovlsw capture"
	ng, err := pcapgo.NewNgWriterInterface(bw, intf, opts)
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	if err := ng.Flush(); err != nil {
		return nil, err
	}
	if portName == nil {
		portName = func(id int) string { return fmt.Sprintf("port %d", id) }
	}
	return &Writer{w: bw, names: portName}, nil
}

// Comment is the packet comment of r: where it was seen, and its drop
// reason.
func (w *Writer) Comment(r *Record) string {
	s := r.Dir.String() + " "
	if r.Port != 0 {
		s += "port " + w.names(r.Port)
	} else {
		s += "peer " + r.Peer.String()
	}
	if r.VNI != 0 {
		s += fmt.Sprintf(" vni %d", r.VNI)
	}
	if r.Drop != "" {
		s += " drop " + r.Drop
	}
	return s
}

func pad4(n int) int { return (4 - n&3) & 3 }

// Write writes r as an Enhanced Packet Block.
func (w *Writer) Write(r *Record) error {
	comment := w.Comment(r)
	optLen := 4 + epbFlagsLength + 4 + len(comment) + pad4(len(comment)) + 4
	total := 28 + len(r.Data) + pad4(len(r.Data)) + optLen + 4
	b := w.buf[:0]
	le := binary.LittleEndian
	ts := uint64(r.Time.UnixNano())
	b = le.AppendUint32(b, blockEPB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0) // interface 0
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(r.Data)))
	b = le.AppendUint32(b, uint32(r.Len))
	b = append(b, r.Data...)
	b = append(b, make([]byte, pad4(len(r.Data)))...)
	b = le.AppendUint16(b, optEPBFlags)
	b = le.AppendUint16(b, epbFlagsLength)
	b = le.AppendUint32(b, uint32(r.Dir)) // bits 0-1: 01 inbound, 10 outbound
	b = le.AppendUint16(b, optComment)
	b = le.AppendUint16(b, uint16(len(comment)))
	b = append(b, comment...)
	b = append(b, make([]byte, pad4(len(comment)))...)
	b = le.AppendUint32(b, optEnd)
	b = le.AppendUint32(b, uint32(total))
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }
