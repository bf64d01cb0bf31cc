package firmware

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Key file names written by GenerateKey.
const (
	PrivateKeyFile = "firmware.key"
	PublicKeyFile  = "firmware.pub"
)

// maxKeyFileSize bounds key file reads; a PEM ed25519 key is about 120 bytes.
const maxKeyFileSize = 16 << 10

// GenerateKey creates an ed25519 key pair in dir: PrivateKeyFile (PKCS#8
// PEM, mode 0600) and PublicKeyFile (PKIX PEM, mode 0644, meant to be
// copied to receivers). The PEM forms are what OpenSSL reads and writes
// ("openssl pkey -in firmware.key -pubout"). Existing keys are never
// overwritten: if either file exists GenerateKey fails with ErrExists.
func GenerateKey(dir string) (ed25519.PublicKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("firmware: keygen: %w", err)
	}
	privPath := filepath.Join(dir, PrivateKeyFile)
	pubPath := filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w: key file %s exists; refusing to overwrite it", ErrExists, p)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("firmware: keygen: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("firmware: keygen: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("firmware: keygen: %w", err)
	}
	// The private key first: a public key without its private key would be
	// useless, the other way round it can be derived again.
	if err := publishNew(dir, privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := publishNew(dir, pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("firmware: keygen: %w", err)
	}
	return pub, nil
}

// publishNew writes data to a temporary file and links it to path, which
// fails if path exists: no window in which a half-written key is visible,
// and no overwrite even if another process raced us.
func publishNew(dir, path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, ".key-")
	if err != nil {
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: key file %s exists; refusing to overwrite it", ErrExists, path)
		}
		return fmt.Errorf("firmware: keygen: %w", err)
	}
	return nil
}

// LoadPrivateKey reads a PKCS#8 PEM ed25519 private key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("firmware: load private key: %w", err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKey parses a PKCS#8 PEM ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrInvalidKey)
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: PEM block is %q, want \"PRIVATE KEY\"", ErrInvalidKey, block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is %T, want ed25519", ErrInvalidKey, k)
	}
	return priv, nil
}

// LoadPublicKey reads an ed25519 public key: a PKIX PEM "PUBLIC KEY", a
// private key file (the public half is derived), or 64 hex digits (the raw
// 32-byte key, the form an ESP build embeds).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("firmware: load public key: %w", err)
	}
	key, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKey parses the formats LoadPublicKey accepts.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		s := strings.TrimSpace(string(data))
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: neither PEM nor %d hex digits", ErrInvalidKey, 2*ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(raw), nil
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: key is %T, want ed25519", ErrInvalidKey, k)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := ParsePrivateKey(data)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	default:
		return nil, fmt.Errorf("%w: PEM block is %q, want \"PUBLIC KEY\"", ErrInvalidKey, block.Type)
	}
}
