// The joiner's side: ask the member that printed a token for the cluster
// secret, open its answer and check it names the token's cluster.

package join

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

// Errors of Request. Each is wrapped with the member's address; none is
// worth retrying as is, except ErrUnreachable.
var (
	// ErrUnreachable: no connection to the member, or it was lost before
	// the request went out. Check the address, that ovlsw runs there and
	// that its gossip port is open; then retry.
	ErrUnreachable = errors.New("member unreachable")
	// ErrRefused: the member does not hold the token's join key: the
	// token was mistyped, rotated since, or printed by another node.
	ErrRefused = errors.New("the member refused the join token")
	// ErrNotJoinService: something answered at the address, but not an
	// ovlsw join service that knows the token's key: another program, an
	// ovlsw that does not serve joins, no answer in time, or an answer
	// that does not open with the token's key.
	ErrNotJoinService = errors.New("not an ovlsw join service")
	// ErrProtocolVersion: the member speaks another version of the join
	// protocol. Run the same ovlsw release on both.
	ErrProtocolVersion = errors.New("the member speaks another join protocol version")
	// ErrWrongCluster: the member handed out a secret whose fingerprint
	// is not the token's: the member is in another cluster than the
	// token names.
	ErrWrongCluster = errors.New("in another cluster than the token names")
)

// Request obtains the cluster secret from the member at addr (host:port,
// its gossip port) that printed tok, and checks it is the secret of the
// cluster tok names. ctx bounds the whole exchange; without a deadline in
// ctx, DefaultTimeout does. Errors wrap ErrUnreachable, ErrRefused,
// ErrNotJoinService, ErrProtocolVersion, ErrWrongCluster or the error of
// a cancelled ctx, say which member, and never contain the token.
func Request(ctx context.Context, addr string, tok Token) (secret.Secret, error) {
	if tok.Key.IsZero() {
		return secret.Secret{}, errors.New("join: the token has no key")
	}
	start := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(DefaultTimeout)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return secret.Secret{}, fmt.Errorf("join %s: %w", addr, ctx.Err())
		}
		return secret.Secret{}, fmt.Errorf("join %s: %w: %v (is ovlsw running there, and its gossip port open?)", addr, ErrUnreachable, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	// Cancelling ctx interrupts the reads and writes below.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var nonceC [nonceSize]byte
	rand.Read(nonceC[:]) // never fails (crypto/rand panics rather)
	if _, err := c.Write(request(&tok.Key, nonceC[:])); err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return secret.Secret{}, fmt.Errorf("join %s: %w", addr, ctx.Err())
		}
		return secret.Secret{}, fmt.Errorf("join %s: %w: sending the request: %v", addr, ErrUnreachable, err)
	}
	sec, err := readResponse(c, &tok.Key, nonceC[:])
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return secret.Secret{}, fmt.Errorf("join %s: %w", addr, ctx.Err())
		}
		if isNetTimeout(err) {
			err = fmt.Errorf("%w: no answer within %v", ErrNotJoinService, deadline.Sub(start).Round(10*time.Millisecond)) // the time allowed, as the caller gave it (its clock started a moment before ours)
		}
		return secret.Secret{}, fmt.Errorf("join %s: %w", addr, err)
	}
	if got := sec.Fingerprint(); got != tok.Cluster {
		return secret.Secret{}, fmt.Errorf("join: the node at %s is %w (its cluster is %s, the token names %s)", addr, ErrWrongCluster, got, tok.Cluster)
	}
	return sec, nil
}

// request returns the request proving the holder of j, with nonce nonceC.
func request(j *secret.Secret, nonceC []byte) []byte {
	b := make([]byte, 0, requestSize)
	b = append(append(b, Magic, Version), nonceC...)
	return append(b, requestMAC(j, Version, nonceC)...)
}

// readResponse reads a member's answer to the request with nonce nonceC
// under join key j, and returns the secret it seals. It reads at most one
// status byte and the answer's fixed size. Errors other than r's own
// (timeouts) wrap ErrRefused, ErrNotJoinService or ErrProtocolVersion,
// except in Go's FIPS 140-only mode, where nothing opens.
func readResponse(r io.Reader, j *secret.Secret, nonceC []byte) (secret.Secret, error) {
	var status [1]byte
	if _, err := io.ReadFull(r, status[:]); err != nil {
		if isNetTimeout(err) {
			return secret.Secret{}, err
		}
		return secret.Secret{}, fmt.Errorf("%w: the connection was closed without an answer (%v); is it an ovlsw gossip port, of a node that serves joins?", ErrNotJoinService, closeReason(err))
	}
	switch status[0] {
	case statusOK:
	case statusRefused:
		return secret.Secret{}, fmt.Errorf("%w: it is not that node's current join token (mistyped, rotated since, or printed by another node); ask for a new token with `ovlsw token` on a member, and join that member", ErrRefused)
	case statusVersion:
		return secret.Secret{}, fmt.Errorf("%w (this ovlsw speaks version %d): run the same ovlsw release on both", ErrProtocolVersion, Version)
	default:
		return secret.Secret{}, fmt.Errorf("%w: it answered with status byte %#02x", ErrNotJoinService, status[0])
	}
	var answer [acceptSize]byte
	if _, err := io.ReadFull(r, answer[:]); err != nil {
		if isNetTimeout(err) {
			return secret.Secret{}, err
		}
		return secret.Secret{}, fmt.Errorf("%w: its answer was cut short (%v)", ErrNotJoinService, closeReason(err))
	}
	nonceS, sealed := answer[:nonceSize], answer[nonceSize:]
	aead, ad, err := sealer(j, nonceC, nonceS)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("join: cannot open the answer: %w", err)
	}
	var sec secret.Secret
	if _, err := aead.Open(sec[:0], zeroNonce[:], sealed, ad); err != nil {
		return secret.Secret{}, fmt.Errorf("%w: its answer does not open with the token's key (not the node that printed the token, or tampered with on the way)", ErrNotJoinService)
	}
	return sec, nil
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closeReason names how a read ended early.
func closeReason(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "end of stream"
	}
	return err.Error()
}
