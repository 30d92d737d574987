package main

// This file holds what the ovlsw-encrypted build needs beyond plain ovlsw:
// the network key both nodes seal with (docs/encryption.md, static mode).

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
)

// networkKeyFile returns a file holding a random base64 32-byte network
// key, written once per run beside the control sockets, mode 0600.
func (h *harness) networkKeyFile() (string, error) {
	path := filepath.Join(h.sockDir, "network.key")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}
