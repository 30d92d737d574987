package join

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

// fixed returns a function returning s, for Server's fields.
func fixed(s secret.Secret) func() secret.Secret { return func() secret.Secret { return s } }

// refusal is one OnRefused call.
type refusal struct {
	remote net.Addr
	why    string
}

// refusals records OnRefused calls.
type refusals struct {
	mu   sync.Mutex
	list []refusal
}

func (r *refusals) add(remote net.Addr, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, refusal{remote, why})
}

func (r *refusals) get() []refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]refusal(nil), r.list...)
}

// listen serves every connection to a new loopback listener with handle,
// each in its own goroutine, until the test ends; cleanup waits for them.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// noToken fails the test if msg spells out any part of the test key.
func noToken(t *testing.T, msg string) {
	t.Helper()
	key := testToken[11 : 11+keyChars]
	if strings.Contains(msg, key[:8]) || strings.Contains(msg, key[20:28]) {
		t.Errorf("error %q repeats the token", msg)
	}
}

func TestRequest(t *testing.T) {
	rotated := seq(0x80)
	for _, tc := range []struct {
		name      string
		key, sec  secret.Secret // the server's
		tok       Token
		want      error  // nil: the secret
		says      string // in the error
		refusedBy string // in the OnRefused reason; "" if not refused
	}{
		{name: "right token", key: testKey, sec: testSecret, tok: testTok},
		{
			name: "wrong key", key: testKey, sec: testSecret, tok: Token{Key: seq(0x40), Cluster: testCluster},
			want: ErrRefused, says: "ask for a new token with `ovlsw token` on a member", refusedBy: "wrong join key",
		},
		{
			name: "rotated", key: rotated, sec: testSecret, tok: testTok,
			want: ErrRefused, says: "rotated", refusedBy: "wrong join key",
		},
		{
			name: "other cluster", key: testKey, sec: testSecret, tok: Token{Key: testKey, Cluster: "0123456789abcdef"},
			want: ErrWrongCluster, says: "is in another cluster",
		},
		{
			name: "no join key", sec: testSecret, tok: testTok,
			want: ErrRefused, refusedBy: "no join key",
		},
		{
			name: "no secret", key: testKey, tok: testTok,
			want: ErrRefused, refusedBy: "no cluster secret",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refused refusals
			srv := &Server{Key: fixed(tc.key), Secret: fixed(tc.sec), OnRefused: refused.add}
			addr := listen(t, srv.Serve)
			got, err := Request(context.Background(), addr, tc.tok)
			if tc.want == nil {
				if err != nil || got != tc.sec {
					t.Fatalf("Request = %v, %v; want %v", got, err, tc.sec)
				}
			} else {
				if !errors.Is(err, tc.want) || !got.IsZero() {
					t.Fatalf("Request = %v, %v; want an error wrapping %q", got, err, tc.want)
				}
				msg := err.Error()
				if !strings.Contains(msg, addr) || !strings.Contains(msg, tc.says) {
					t.Errorf("error %q does not name %s and say %q", msg, addr, tc.says)
				}
				noToken(t, msg)
				if testing.Verbose() {
					t.Log(msg)
				}
			}
			if tc.want == ErrWrongCluster {
				if msg := err.Error(); !strings.Contains(msg, testCluster) || !strings.Contains(msg, "0123456789abcdef") {
					t.Errorf("error %q does not show both fingerprints", msg)
				}
			}
			// Serve calls OnRefused after closing the stream, which Request
			// may have seen first.
			var rs []refusal
			waitFor(t, func() bool { rs = refused.get(); return tc.refusedBy == "" || len(rs) > 0 })
			switch {
			case tc.refusedBy == "" && len(rs) > 0:
				t.Errorf("refused: %+v", rs)
			case tc.refusedBy != "" && (len(rs) != 1 || !strings.Contains(rs[0].why, tc.refusedBy)):
				t.Errorf("refused %+v, want one saying %q", rs, tc.refusedBy)
			case len(rs) == 1:
				if a, ok := rs[0].remote.(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
					t.Errorf("refused remote %v, want the joiner's loopback address", rs[0].remote)
				}
			}
		})
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRequestNotJoinService: what Request says of things that are not a
// join service, or not one that knows the token's key.
func TestRequestNotJoinService(t *testing.T) {
	forged := validResponse(make([]byte, nonceSize), seq(0x60))
	for _, tc := range []struct {
		name   string
		handle func(net.Conn)
		want   error
		says   string
	}{
		{"closes at once", func(c net.Conn) { c.Close() }, ErrNotJoinService, "closed without an answer"},
		{"reads and closes", func(c net.Conn) { io.ReadFull(c, make([]byte, requestSize)); c.Close() }, ErrNotJoinService, "closed without an answer"},
		{"http", answer([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")), ErrNotJoinService, "status byte 0x48"},
		{"memberlist error", answer([]byte{13, 0x81, 0xa5}), ErrNotJoinService, "status byte 0x0d"},
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c); c.Close() }, ErrNotJoinService, "no answer within 200ms"},
		{"cut short", answer([]byte{statusOK, 1, 2, 3}), ErrNotJoinService, "cut short"},
		{"forged", answer(forged), ErrNotJoinService, "does not open with the token's key"},
		{"other version", answer([]byte{statusVersion}), ErrProtocolVersion, "release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := listen(t, tc.handle)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			got, err := Request(ctx, addr, testTok)
			if !errors.Is(err, tc.want) || !got.IsZero() {
				t.Fatalf("Request = %v, %v; want an error wrapping %q", got, err, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, addr) || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not name %s and say %q", msg, addr, tc.says)
			} else if testing.Verbose() {
				t.Log(msg)
			}
		})
	}
}

// answer returns a handler that reads a request and writes b.
func answer(b []byte) func(net.Conn) {
	return func(c net.Conn) {
		io.ReadFull(c, make([]byte, requestSize))
		c.Write(b)
		c.Close()
	}
}

func TestRequestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Request(context.Background(), addr, testTok)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Request to a closed port: %v, want ErrUnreachable naming %s", err, addr)
	}
	if _, err := Request(context.Background(), addr, Token{Cluster: testCluster}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("Request with a zero token: %v", err)
	}
}

// TestRequestCancel: cancelling ctx ends an exchange waiting on a silent
// member.
func TestRequestCancel(t *testing.T) {
	accepted := make(chan struct{})
	addr := listen(t, func(c net.Conn) {
		close(accepted)
		io.Copy(io.Discard, c)
		c.Close()
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Request(ctx, addr, testTok)
		errc <- err
	}()
	<-accepted
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Request after cancel: %v, want context.Canceled", err)
	}
}

// halfClosed is the server end of a net.Pipe that reads io.EOF after left
// bytes, as a TCP stream does after the peer's half close, so that a
// short request ends at once instead of at the deadline.
type halfClosed struct {
	net.Conn
	left int
}

func (c *halfClosed) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

// serveBytes runs srv.Serve on a net.Pipe fed req, and returns what it
// answered and the reasons it gave OnRefused.
func serveBytes(srv Server, req []byte) (resp []byte, whys []string) {
	client, server := net.Pipe()
	var refused refusals
	srv.OnRefused = refused.add
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(&halfClosed{Conn: server, left: len(req)})
	}()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		client.Write(req) // fails once Serve closes its end, if it read less
	}()
	resp, _ = io.ReadAll(client) // until Serve closes its end
	client.Close()
	<-wrote
	<-done
	for _, r := range refused.get() {
		whys = append(whys, r.why)
	}
	return resp, whys
}

// validRequest is a request for the test key with nonce nonceC.
func validRequest(nonceC []byte) []byte { return request(&testKey, nonceC) }

// validResponse is the test member's answer sealing the test secret for a
// request with nonce nonceC, with its nonce nonceS.
func validResponse(nonceC []byte, nonceS secret.Secret) []byte {
	aead, ad, err := sealer(&testKey, nonceC, nonceS[:])
	if err != nil {
		panic(err)
	}
	b := append([]byte{statusOK}, nonceS[:]...)
	return aead.Seal(b, zeroNonce[:], testSecret[:], ad)
}

// testServer is the test member.
func testServer() Server {
	return Server{Key: fixed(testKey), Secret: fixed(testSecret), Timeout: time.Second}
}

func TestServe(t *testing.T) {
	nonceC := seq(0x40)
	good := validRequest(nonceC[:])
	badMAC := bytes.Clone(good)
	badMAC[len(badMAC)-1] ^= 1
	v2 := bytes.Clone(good)
	v2[1] = 2
	for _, tc := range []struct {
		name string
		req  []byte
		want []byte // the answer; nil for the secret
		why  string // the OnRefused reason; "" for none
	}{
		{"valid", good, nil, ""},
		{"valid, then more", append(bytes.Clone(good), 1, 2, 3), nil, ""},
		{"wrong mac", badMAC, []byte{statusRefused}, "wrong join key"},
		{"other version", v2, []byte{statusVersion}, "version 2"},
		{"not magic", append([]byte{6}, good[1:]...), []byte{statusRefused}, "not a join request (first byte 0x06)"},
		{"empty", nil, []byte{}, "incomplete request: closed by the joiner"},
		{"magic only", []byte{Magic}, []byte{}, "incomplete request"},
		{"short", good[:requestSize-1], []byte{}, "incomplete request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, whys := serveBytes(testServer(), tc.req)
			if tc.want == nil {
				sec, err := readResponse(bytes.NewReader(resp), &testKey, nonceC[:])
				if err != nil || sec != testSecret || len(resp) != 1+acceptSize {
					t.Fatalf("answer %x: %v, %v", resp, sec, err)
				}
			} else if !bytes.Equal(resp, tc.want) {
				t.Fatalf("answer %x, want %x", resp, tc.want)
			}
			if tc.why == "" && len(whys) > 0 || tc.why != "" && (len(whys) != 1 || !strings.Contains(whys[0], tc.why)) {
				t.Fatalf("refused %q, want %q", whys, tc.why)
			}
		})
	}
}

// TestServeNewKeyPerExchange: the same request twice (a replay) gets
// answers under different keys, each opening only with its own nonceS.
func TestServeNewKeyPerExchange(t *testing.T) {
	nonceC := seq(0x40)
	req := validRequest(nonceC[:])
	a, _ := serveBytes(testServer(), req)
	b, _ := serveBytes(testServer(), req)
	if bytes.Equal(a[1:1+nonceSize], b[1:1+nonceSize]) || bytes.Equal(a[1+nonceSize:], b[1+nonceSize:]) {
		t.Fatalf("two answers share a nonce or ciphertext:\n%x\n%x", a, b)
	}
	// b's ciphertext under a's nonceS does not open.
	spliced := append(bytes.Clone(a[:1+nonceSize]), b[1+nonceSize:]...)
	if _, err := readResponse(bytes.NewReader(spliced), &testKey, nonceC[:]); !errors.Is(err, ErrNotJoinService) {
		t.Fatalf("spliced answer: %v, want ErrNotJoinService", err)
	}
}

// TestServeTimeout: a joiner that sends the magic byte and nothing more
// is cut off by the Timeout.
func TestServeTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	var refused refusals
	srv := &Server{Key: fixed(testKey), Secret: fixed(testSecret), Timeout: 50 * time.Millisecond, OnRefused: refused.add}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(server)
	}()
	if _, err := client.Write([]byte{Magic}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after a 50ms timeout")
	}
	if rs := refused.get(); len(rs) != 1 || rs[0].why != "incomplete request: timed out" {
		t.Fatalf("refused %+v, want one timeout", rs)
	}
}
