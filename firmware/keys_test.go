package firmware

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	pub, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	privPath := filepath.Join(dir, PrivateKeyFile)
	pubPath := filepath.Join(dir, PublicKeyFile)
	for path, mode := range map[string]os.FileMode{privPath: 0o600, pubPath: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	priv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Equal(pub) || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("loaded keys do not match the generated pair")
	}
	msg := []byte("image")
	if !ed25519.Verify(loaded, msg, ed25519.Sign(priv, msg)) {
		t.Error("signature with loaded private key does not verify with loaded public key")
	}
	// The public half can be loaded from the private key file and from hex.
	if k, err := LoadPublicKey(privPath); err != nil || !k.Equal(pub) {
		t.Errorf("public key from private key file: %v", err)
	}
	hexPath := filepath.Join(t.TempDir(), "pub.hex")
	if err := os.WriteFile(hexPath, []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadPublicKey(hexPath); err != nil || !k.Equal(pub) {
		t.Errorf("public key from hex: %v", err)
	}
	// Never overwrite.
	before, _ := os.ReadFile(privPath)
	_, err = GenerateKey(dir)
	if !errors.Is(err, ErrExists) || err.Error() != "firmware: image already stored: key file "+privPath+" exists; refusing to overwrite it" {
		t.Errorf("second GenerateKey: %v", err)
	}
	after, _ := os.ReadFile(privPath)
	if string(before) != string(after) {
		t.Error("private key changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("key dir holds %d entries, want 2", len(entries))
	}
}

func TestLoadKeyRejects(t *testing.T) {
	dir := t.TempDir()
	pubDir := t.TempDir()
	if _, err := GenerateKey(pubDir); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage", "not a key")
	big := write("big", strings.Repeat("A", maxKeyFileSize+1))
	cert := write("cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	badDER := write("bad", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	shortHex := write("short", "abcd")

	if _, err := LoadPrivateKey(garbage); !errors.Is(err, ErrInvalidKey) || err.Error() != garbage+": firmware: invalid key: no PEM block found" {
		t.Errorf("garbage private key: %v", err)
	}
	if _, err := LoadPrivateKey(cert); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), `PEM block is "CERTIFICATE"`) {
		t.Errorf("certificate as private key: %v", err)
	}
	if _, err := LoadPrivateKey(badDER); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("bad DER: %v", err)
	}
	if _, err := LoadPrivateKey(filepath.Join(pubDir, PublicKeyFile)); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), `PEM block is "PUBLIC KEY"`) {
		t.Errorf("public key as private key: %v", err)
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := LoadPrivateKey(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversize key file: %v", err)
	}
	if _, err := LoadPublicKey(shortHex); !errors.Is(err, ErrInvalidKey) || err.Error() != shortHex+": firmware: invalid key: neither PEM nor 64 hex digits" {
		t.Errorf("short hex: %v", err)
	}
	if _, err := LoadPublicKey(cert); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("certificate as public key: %v", err)
	}
}
