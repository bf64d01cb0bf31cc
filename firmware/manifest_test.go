package firmware

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func manifestKeys(t *testing.T, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestManifestSignOpen(t *testing.T) {
	pub, priv := manifestKeys(t, 1)
	otherPub, _ := manifestKeys(t, 2)
	img := []byte("firmware image bytes")
	m := NewManifest(img, Meta{Role: "sensor", Hardware: "ESP32", Version: "1.2.0"}, 42, false)
	enc, sig, err := SignManifest(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenManifest(enc, sig, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != m {
		t.Fatalf("opened %+v, signed %+v", got, m)
	}
	if err := got.Matches(img); err != nil {
		t.Fatal(err)
	}
	if err := got.Matches(append(img, 0)); !errors.Is(err, ErrManifest) {
		t.Fatalf("Matches other bytes: %v", err)
	}
	// An image signature is not a manifest signature, and the other way round.
	if _, err := OpenManifest(enc, ed25519.Sign(priv, enc), pub); !errors.Is(err, ErrManifest) {
		t.Fatalf("signature over the bare manifest accepted: %v", err)
	}
	bad := []struct {
		name     string
		enc, sig []byte
		pub      ed25519.PublicKey
		want     string
	}{
		{"other key", enc, sig, otherPub, "does not verify"},
		{"tampered", bytes.Replace(enc, []byte(`"counter":42`), []byte(`"counter":43`), 1), sig, pub, "does not verify"},
		{"missing", nil, nil, pub, "not signed with a manifest"},
		{"too large", make([]byte, MaxManifestSize+1), sig, pub, "at most"},
	}
	for _, b := range bad {
		if _, err := OpenManifest(b.enc, b.sig, b.pub); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want ErrManifest with %q", b.name, err, b.want)
		}
	}
}

func TestManifestRejectsBadFields(t *testing.T) {
	_, priv := manifestKeys(t, 1)
	m := NewManifest([]byte("x"), Meta{Role: "sensor", Hardware: "ESP32", Version: "1"}, 1, false)
	for name, change := range map[string]func(*Manifest){
		"format":  func(m *Manifest) { m.Format = 2 },
		"role":    func(m *Manifest) { m.Role = "a/b" },
		"sha256":  func(m *Manifest) { m.SHA256 = "XYZ" },
		"md5":     func(m *Manifest) { m.MD5 = "" },
		"size":    func(m *Manifest) { m.Size = 0 },
		"version": func(m *Manifest) { m.Version = "" },
	} {
		c := m
		change(&c)
		if _, _, err := SignManifest(c, priv); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: %v, want ErrManifest", name, err)
		}
	}
	if _, err := ParseManifest([]byte(`{"format":1,"extra":true}`)); !errors.Is(err, ErrManifest) {
		t.Errorf("unknown field accepted: %v", err)
	}
}
