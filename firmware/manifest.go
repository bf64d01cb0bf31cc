package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrManifest is wrapped by every error about a manifest: missing,
// malformed, badly signed, or not matching its image or the node.
var ErrManifest = errors.New("firmware: manifest")

// ManifestFormat is the Format of the manifests this package writes.
const ManifestFormat = 1

// MaxManifestSize bounds an encoded manifest; a real one is about 250
// bytes.
const MaxManifestSize = 1024

// manifestContext is prepended to the encoded manifest before signing, so
// a manifest signature is never also a valid signature over some image
// (the older scheme signs the image bytes themselves).
const manifestContext = "meshfleet firmware manifest v1\n"

// Manifest is what an image's signature covers: the image (by SHA-256,
// with MD5 and size as the stock protocol names it), the target it is
// for, and its place in the release sequence. A receiver with the public
// key installs an image only if a manifest signed by that key names it,
// names the receiver's own role and hardware, and carries a security
// counter at least the receiver's (or is a signed downgrade).
type Manifest struct {
	Format   int    `json:"format"`
	Role     string `json:"role"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	MD5      string `json:"md5"`
	// Counter is the security counter: a receiver refuses an image whose
	// counter is below the one of the last image it confirmed.
	Counter uint64 `json:"counter"`
	// Downgrade lets the image install on receivers whose counter is
	// higher (it does not lower their counter). Set only on purpose.
	Downgrade bool `json:"downgrade,omitempty"`
}

// NewManifest describes image for meta with the given security counter.
func NewManifest(image []byte, meta Meta, counter uint64, downgrade bool) Manifest {
	s := sha256.Sum256(image)
	m := md5.Sum(image)
	return Manifest{Format: ManifestFormat, Role: meta.Role, Hardware: meta.Hardware, Version: meta.Version,
		Size: int64(len(image)), SHA256: hex.EncodeToString(s[:]), MD5: hex.EncodeToString(m[:]),
		Counter: counter, Downgrade: downgrade}
}

// Validate checks the fields of a manifest.
func (m Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("%w: format %d, want %d", ErrManifest, m.Format, ManifestFormat)
	}
	if err := ValidateMeta(Meta{Role: m.Role, Hardware: m.Hardware, Version: m.Version}); err != nil {
		return fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if m.Size <= 0 {
		return fmt.Errorf("%w: size %d is not positive", ErrManifest, m.Size)
	}
	if len(m.SHA256) != 64 || !isLowerHex(m.SHA256) {
		return fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrManifest, m.SHA256)
	}
	if !md5Pattern.MatchString(m.MD5) {
		return fmt.Errorf("%w: md5 %q is not 32 lowercase hex digits", ErrManifest, m.MD5)
	}
	return nil
}

// Matches checks that the manifest describes exactly these image bytes.
func (m Manifest) Matches(image []byte) error {
	got := NewManifest(image, Meta{}, 0, false)
	if m.Size != got.Size || m.SHA256 != got.SHA256 || m.MD5 != got.MD5 {
		return fmt.Errorf("%w: it names %d bytes with sha256 %s, the image is %d bytes with sha256 %s", ErrManifest, m.Size, m.SHA256, got.Size, got.SHA256)
	}
	return nil
}

// Encode returns the manifest's JSON: the bytes that are signed and sent.
func (m Manifest) Encode() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // plain values only
	}
	return b
}

// SignManifest validates m and signs its encoding with key.
func SignManifest(m Manifest, key ed25519.PrivateKey) (encoded, sig []byte, err error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("%w: signing key is %d bytes, want %d", ErrInvalidKey, len(key), ed25519.PrivateKeySize)
	}
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	encoded = m.Encode()
	return encoded, ed25519.Sign(key, manifestMessage(encoded)), nil
}

// OpenManifest verifies sig over the encoded manifest with pub, then
// parses and validates it. Nothing in it is read before the signature
// verified.
func OpenManifest(encoded, sig []byte, pub ed25519.PublicKey) (Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	if len(encoded) == 0 {
		return Manifest{}, fmt.Errorf("%w: none (the image is not signed with a manifest)", ErrManifest)
	}
	if len(encoded) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, at most %d", ErrManifest, len(encoded), MaxManifestSize)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, manifestMessage(encoded), sig) {
		return Manifest{}, fmt.Errorf("%w: signature does not verify with the configured public key", ErrManifest)
	}
	return ParseManifest(encoded)
}

// ParseManifest parses and validates an encoded manifest without checking
// any signature (for display, and for checks before signing).
func ParseManifest(encoded []byte) (Manifest, error) {
	if len(encoded) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, at most %d", ErrManifest, len(encoded), MaxManifestSize)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(encoded))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func manifestMessage(encoded []byte) []byte {
	return append([]byte(manifestContext), encoded...)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
