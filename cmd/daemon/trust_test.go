package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/gossip/join"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

func trustFiles(t *testing.T) trustConfig {
	dir := t.TempDir()
	return trustConfig{SecretFile: filepath.Join(dir, "n.secret"), JoinKeyFile: filepath.Join(dir, "n.joinkey"),
		Self: netip.MustParseAddrPort("127.0.0.1:7946"), Log: slog.New(slog.DiscardHandler)}
}

// TestTrustFound: a node without join addresses founds a cluster: it makes
// the secret and its join key, mode 0600, and prints a join token carrying
// the cluster's fingerprint once; started again, it keeps both and prints
// nothing.
func TestTrustFound(t *testing.T) {
	cfg := trustFiles(t)
	var out bytes.Buffer
	cfg.Out = &out
	tr, err := loadTrust(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.secure() {
		t.Fatal("a founding node has no cluster secret")
	}
	if out.Len() != 0 {
		t.Errorf("printed before the node is up:\n%s", out.String())
	}
	tr.announce()
	tok, err := join.ParseToken(tr.token())
	if err != nil || tok.Cluster != tr.secret.Fingerprint() {
		t.Fatalf("token %q: %v, cluster %q, want %q", tr.token(), err, tok.Cluster, tr.secret.Fingerprint())
	}
	if !strings.Contains(out.String(), tr.token()) || !strings.Contains(out.String(), "--join") {
		t.Errorf("founding printed:\n%s", out.String())
	}
	for _, f := range []string{cfg.SecretFile, cfg.JoinKeyFile} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	out.Reset()
	again, err := loadTrust(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.secret != tr.secret || again.token() != tr.token() || out.Len() != 0 {
		t.Errorf("restart: secret kept %v, token kept %v, printed %q", again.secret == tr.secret, again.token() == tr.token(), out.String())
	}
	// Rotated: a new token for the same cluster, kept across a restart.
	rotated, err := again.rotateToken()
	if err != nil || rotated == tr.token() {
		t.Fatalf("rotate: %q %v", rotated, err)
	}
	if third, err := loadTrust(context.Background(), cfg); err != nil || third.token() != rotated {
		t.Errorf("after rotate and restart: %v, token kept %v", err, third.token() == rotated)
	}
}

// TestTrustRefusals: joining needs a token, a token needs somewhere to
// join, a bad token is refused naming the problem, and a secret file others
// can read is refused.
func TestTrustRefusals(t *testing.T) {
	s, _ := secret.Generate()
	j, _ := secret.Generate()
	good := join.Token{Key: j, Cluster: s.Fingerprint()}.String()
	for _, tc := range []struct {
		name  string
		setup func(*trustConfig)
		want  string
	}{
		{"join without token", func(c *trustConfig) { c.Join = []string{"127.0.0.2"} }, "joining a cluster needs a join token"},
		{"token without join", func(c *trustConfig) { c.Token = good }, "give the member to join too"},
		{"bad token", func(c *trustConfig) { c.Token, c.Join = "ovlsw-nonsense", []string{"127.0.0.2"} }, "join token:"},
		{"readable secret", func(c *trustConfig) {
			if err := secret.Save(c.SecretFile, s); err != nil {
				t.Fatal(err)
			}
			os.Chmod(c.SecretFile, 0o644)
		}, "chmod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := trustFiles(t)
			tc.setup(&cfg)
			_, err := loadTrust(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		})
	}
}

// TestTrustInsecure: --insecure has no secret and no token, keeps a key
// file's key as a static key, and refuses token requests.
func TestTrustInsecure(t *testing.T) {
	cfg := trustFiles(t)
	cfg.Insecure, cfg.Key = true, bytes.Repeat([]byte{7}, 32)
	tr, err := loadTrust(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.secure() || tr.token() != "" || !bytes.Equal(tr.static, cfg.Key) || tr.joinServer() != nil {
		t.Errorf("insecure trust: secure %v, token %q, static key kept %v", tr.secure(), tr.token(), bytes.Equal(tr.static, cfg.Key))
	}
	if _, err := tr.rotateToken(); err == nil {
		t.Error("an insecure node rotated a token")
	}
	if _, err := os.Stat(cfg.SecretFile); !os.IsNotExist(err) {
		t.Errorf("insecure node wrote a secret file: %v", err)
	}
}
