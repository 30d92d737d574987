package seal

// This file holds the AEAD suites: AES-256-GCM where the CPU has AES
// instructions (and carry-less multiply, which GHASH needs to be fast and
// constant-time), ChaCha20-Poly1305 otherwise. The sender picks by its own
// CPU and names the suite in each header; a receiver opens either, so nodes
// with and without AES instructions talk to each other.

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Suite names an AEAD.
type Suite uint8

// Suites. The values are the header's suite byte.
const (
	AES256GCM        Suite = 1
	ChaCha20Poly1305 Suite = 2
)

// KeyLen is the key length of both suites: 32 bytes.
const KeyLen = 32

func (s Suite) valid() bool { return s == AES256GCM || s == ChaCha20Poly1305 }

// String names the suite as status shows it.
func (s Suite) String() string {
	switch s {
	case AES256GCM:
		return "aes-256-gcm"
	case ChaCha20Poly1305:
		return "chacha20-poly1305"
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// ParseSuite reads a suite's name; "" and "auto" give Preferred.
func ParseSuite(name string) (Suite, error) {
	switch name {
	case "", "auto":
		return Preferred(), nil
	case "aes-256-gcm", "aes":
		return AES256GCM, nil
	case "chacha20-poly1305", "chacha":
		return ChaCha20Poly1305, nil
	}
	return 0, fmt.Errorf("seal: unknown suite %q: want aes-256-gcm, chacha20-poly1305 or auto", name)
}

// Preferred returns the suite this CPU seals fastest: AES-256-GCM with AES
// and carry-less multiply instructions (x86 AES-NI and PCLMULQDQ, arm64 AES
// and PMULL, s390x), ChaCha20-Poly1305 without.
func Preferred() Suite {
	hasAES := false
	switch runtime.GOARCH {
	case "amd64", "386":
		hasAES = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		hasAES = cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		hasAES = cpu.S390X.HasAES && cpu.S390X.HasAESGCM
	}
	if hasAES {
		return AES256GCM
	}
	return ChaCha20Poly1305
}

// newAEAD returns suite s keyed with key (KeyLen bytes).
func newAEAD(s Suite, key []byte) (cipher.AEAD, error) {
	switch s {
	case AES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case ChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("seal: unknown suite %d", s)
}
