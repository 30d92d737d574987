// The state file: the secret on disk, as its join token on one line.
//
// Design notes: the file holds the token, not raw bytes, so its fingerprint
// checks the content on every load (a corrupted or hand-edited file is
// refused, not turned into a different cluster), and an operator who has
// root on the founding node can read the token to hand out. Save writes a
// temporary file beside the target and renames it over, so a crash leaves
// the old file or the new one, never half of one. Load refuses a file that
// group or others can access, as ssh does with private keys: a readable
// secret has likely been read.

package secret

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// FileMode is the mode Save gives the state file.
const FileMode os.FileMode = 0o600

// groupOther are the permission bits Load refuses.
const groupOther os.FileMode = 0o077

// maxFileSize bounds what Load reads: a token and a line ending, with room
// to spare; anything larger is not a secret file.
const maxFileSize = 1024

// ErrPermissions is wrapped by Load when group or others may access the
// file. Fix the mode (chmod 600) and, since the secret may have been read,
// consider a new one.
var ErrPermissions = errors.New("secret file is accessible by group or others")

// Save writes s to path atomically with mode 0600, creating path's
// directory with mode 0700 if it is missing. An existing file is replaced.
func Save(path string, s Secret) (reterr error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	defer func() {
		if reterr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp already creates 0600; Chmod makes it so whatever the umask.
	if err := f.Chmod(FileMode); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	if _, err := f.WriteString(s.Token() + "\n"); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("secret: save %s: %w", path, err)
	}
	// Make the rename itself durable. Not every file system can sync a
	// directory; the file is in place either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load reads the secret Save wrote at path. A missing file gives an error
// wrapping fs.ErrNotExist (a founding node then generates and saves one).
// A file that group or others may access gives an error wrapping
// ErrPermissions. Content that is not a valid token gives an error
// wrapping the token error (ErrTokenFingerprint for most corruption).
func Load(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, fmt.Errorf("secret: load: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Secret{}, fmt.Errorf("secret: load: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("secret: load %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&groupOther != 0 {
		return Secret{}, fmt.Errorf("secret: load %s: %w (mode %#o): run chmod 600 %s", path, ErrPermissions, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Secret{}, fmt.Errorf("secret: load %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return Secret{}, fmt.Errorf("secret: load %s: bad content: larger than %d bytes, not a secret file", path, maxFileSize)
	}
	s, err := parseToken(string(b))
	if err != nil {
		return Secret{}, fmt.Errorf("secret: load %s: bad content: %w", path, err)
	}
	return s, nil
}
