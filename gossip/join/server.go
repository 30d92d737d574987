// The member's side: check a request's MAC against this node's join key
// and seal the cluster secret for a joiner that holds it.

package join

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

// Server answers join requests on a member. Its fields are read on every
// exchange, so a Server may serve many streams at once; Key and Secret are
// functions so that a rotated join key or a new secret takes effect at
// the next request.
type Server struct {
	// Key returns this node's current join key J. A zero key (or a nil
	// Key) refuses every request.
	Key func() secret.Secret
	// Secret returns the cluster secret S handed to joiners. A zero
	// secret (or a nil Secret) refuses every request.
	Secret func() secret.Secret
	// OnRefused, if set, is called once for every exchange that did not
	// hand out the secret, with the joiner's address and why in a few
	// words (a wrong key, a malformed or incomplete request, an unknown
	// version). It is called from Serve's goroutine after the stream is
	// closed, and should return promptly (log, count, rate-limit).
	OnRefused func(remote net.Addr, why string)
	// Timeout bounds each read and each write of the exchange; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Serve runs one exchange on c, whose first unread byte is the request's
// first (Magic, when c comes from a gossip listener that peeked at it but
// left it readable), and closes c. A bad request gets one status byte
// and no more; the joiner is told nothing else. Serve returns when the
// exchange is over, when a read or write times out, or when c is closed.
func (s *Server) Serve(c net.Conn) {
	remote := c.RemoteAddr()
	why := s.serve(c)
	c.Close()
	if why != "" && s.OnRefused != nil {
		s.OnRefused(remote, why)
	}
}

// serve runs the exchange and returns why it refused, or "" if it sent
// the secret (or failed only in sending it).
func (s *Server) serve(c net.Conn) string {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var req [requestSize]byte
	// The header first: a request of another version may have another
	// length.
	c.SetReadDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(c, req[:headerSize]); err != nil {
		return "incomplete request: " + readError(err)
	}
	if req[0] != Magic {
		s.reply(c, timeout, statusRefused)
		return fmt.Sprintf("not a join request (first byte %#02x)", req[0])
	}
	if req[1] != Version {
		s.reply(c, timeout, statusVersion)
		return fmt.Sprintf("join protocol version %d, this node speaks %d", req[1], Version)
	}
	if _, err := io.ReadFull(c, req[headerSize:]); err != nil {
		return "incomplete request: " + readError(err)
	}
	nonceC, mac := req[headerSize:headerSize+nonceSize], req[headerSize+nonceSize:]

	var j, sec secret.Secret
	if s.Key != nil {
		j = s.Key()
	}
	if s.Secret != nil {
		sec = s.Secret()
	}
	switch {
	case j.IsZero():
		s.reply(c, timeout, statusRefused)
		return "this node has no join key"
	case !hmac.Equal(mac, requestMAC(&j, req[1], nonceC)): // constant time
		s.reply(c, timeout, statusRefused)
		return "wrong join key: a mistyped or rotated token, or another node's"
	case sec.IsZero():
		s.reply(c, timeout, statusRefused)
		return "this node has no cluster secret"
	}

	var answer [1 + acceptSize]byte
	answer[0] = statusOK
	nonceS := answer[1 : 1+nonceSize]
	rand.Read(nonceS) // never fails (crypto/rand panics rather)
	aead, ad, err := sealer(&j, nonceC, nonceS)
	if err != nil {
		s.reply(c, timeout, statusRefused)
		return "cannot seal the secret: " + err.Error()
	}
	aead.Seal(answer[1+nonceSize:1+nonceSize], zeroNonce[:], sec[:], ad)
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write(answer[:]) // a joiner gone away is not a refusal
	return ""
}

// reply writes one status byte, ignoring errors (the joiner may be gone),
// then reads what the joiner may still send until it closes, up to
// maxDrain bytes and the timeout: closing a TCP stream with unread data
// resets it, and the reset may overtake the status byte (as net/http's
// lingering close avoids for its error responses).
func (s *Server) reply(c net.Conn, timeout time.Duration, status byte) {
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{status}); err != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	io.CopyN(io.Discard, c, maxDrain)
}

// maxDrain bounds what reply reads after a refusal: a request of any
// version this package can imagine, and then some.
const maxDrain = 1024

// readError says briefly why a read failed.
func readError(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the joiner"
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrClosedPipe):
		return "closed here"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}
