package secret

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ovlsw") // two levels missing
	path := filepath.Join(dir, "cluster.secret")
	if err := Save(path, testSecret); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != FileMode {
		t.Errorf("file mode %v, want %v", got, FileMode)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got&0o077 != 0 {
		t.Errorf("directory mode %v: group or others have access", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != testToken+"\n" {
		t.Errorf("file holds %q, want the token and a newline", b)
	}
	got, err := Load(path)
	if err != nil || got != testSecret {
		t.Fatalf("Load = %v, %v; want %v", got, err, testSecret)
	}

	// Save replaces, and leaves no temporary file behind.
	other, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(path, other); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || got != other {
		t.Fatalf("Load after a second Save = %v, %v; want %v", got, err, other)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only the secret file", entries)
	}
}

// TestSaveMode: Save gives 0600 even over a file that had another mode.
func TestSaveMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, testSecret); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != FileMode {
		t.Fatalf("mode after Save over a 0644 file: %v, %v", fi.Mode(), err)
	}
}

func TestSaveErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
	}{
		{"directory is a file", filepath.Join(file, "secret")},
		{"path is a directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Save(tc.path, testSecret); err == nil {
				t.Fatal("Save succeeded")
			} else if !strings.HasPrefix(err.Error(), "secret: save ") {
				t.Errorf("error %q lacks context", err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %v after a failed Save", entries)
			}
		})
	}
}

func TestLoadPermissions(t *testing.T) {
	for _, tc := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o700, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o666, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(testToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // not subject to the umask
				t.Fatal(err)
			}
			s, err := Load(path)
			switch {
			case tc.ok && (err != nil || s != testSecret):
				t.Fatalf("Load = %v, %v; want %v", s, err, testSecret)
			case !tc.ok && !errors.Is(err, ErrPermissions):
				t.Fatalf("Load = %v, %v; want ErrPermissions", s, err)
			case !tc.ok && !strings.Contains(err.Error(), "chmod 600 "+path):
				t.Fatalf("error %q does not say to chmod 600", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	flipped := []byte(testToken)
	flipped[20] = 'a' + (flipped[20]-'a'+1)%26
	for _, tc := range []struct {
		name    string
		content string
		dir     bool // path is a directory
		missing bool
		want    error // nil: just an error
	}{
		{name: "missing", missing: true, want: fs.ErrNotExist},
		{name: "directory", dir: true},
		{name: "empty", content: "", want: ErrNotToken},
		{name: "garbage", content: "\x00\x01\x02", want: ErrNotToken},
		{name: "raw bytes", content: string(testSecret[:]), want: ErrNotToken},
		{name: "flipped character", content: string(flipped) + "\n", want: ErrTokenFingerprint},
		{name: "truncated", content: testToken[:50], want: ErrTokenLength},
		{name: "two tokens", content: testToken + "\n" + testToken + "\n", want: ErrTokenLength},
		{name: "huge", content: testToken + strings.Repeat(" ", 2000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			switch {
			case tc.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case !tc.missing:
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(path)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Load = %v, %v; want an error wrapping %v", s, err, tc.want)
			}
			if !s.IsZero() {
				t.Errorf("secret %v returned with the error", s)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}
