package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"path/filepath"
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

func TestStoreSignsManifestsWithCounters(t *testing.T) {
	pub, priv := manifestKeys(t, 3)
	s := openTest(t, nil)
	ctx := context.Background()
	add := func(content, version string, opts AddOptions) (Image, error) {
		opts.SigningKey = priv
		return s.Add(ctx, strings.NewReader(content), Meta{Role: "sensor", Hardware: "ESP32", Version: version}, opts)
	}
	counter := func(img Image) uint64 {
		t.Helper()
		m, ok := img.SignedManifest()
		if !ok {
			t.Fatalf("image %s has no manifest", img.ID)
		}
		return m.Counter
	}
	v1, err := add("image one", "1", AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := add("image two", "2", AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v5, err := add("image five", "5", AddOptions{Counter: 5})
	if err != nil {
		t.Fatal(err)
	}
	if counter(v1) != 1 || counter(v2) != 2 || counter(v5) != 5 {
		t.Fatalf("counters %d %d %d, want 1 2 5", counter(v1), counter(v2), counter(v5))
	}
	for _, id := range []string{v1.ID, v2.ID, v5.ID} {
		if err := s.VerifySignature(id, pub); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := add("image three", "3", AddOptions{Downgrade: true}); !errors.Is(err, ErrManifest) {
		t.Fatalf("downgrade without a counter: %v", err)
	}
	if _, err := s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor", Hardware: "ESP32", Version: "9"}, AddOptions{Counter: 9}); !errors.Is(err, ErrManifest) {
		t.Fatalf("counter without a key: %v", err)
	}
	// Signing v1 again: an ordinary update with the next counter, or a
	// downgrade keeping its own.
	re, err := s.Sign(v1.ID, priv, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if counter(re) != 6 {
		t.Fatalf("v1 signed again: counter %d, want 6", counter(re))
	}
	down, err := s.Sign(v2.ID, priv, SignOptions{Downgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := down.SignedManifest(); m.Counter != 2 || !m.Downgrade {
		t.Fatalf("v2 signed as a downgrade: %+v", m)
	}
	if got, err := s.Get(v2.ID); err != nil || !bytes.Equal(got.Manifest, down.Manifest) {
		t.Fatalf("stored record after Sign: %v", err)
	}
	if err := s.VerifySignature(v2.ID, pub); err != nil {
		t.Fatal(err)
	}
}

func TestSignatureOnlyImageFailsVerifySignature(t *testing.T) {
	pub, priv := manifestKeys(t, 4)
	s := openTest(t, nil)
	img, err := s.Add(context.Background(), strings.NewReader("old"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What an image signed before manifests looks like on disk.
	data, _ := s.ReadAll(img.ID)
	img.Signature = ed25519.Sign(priv, data)
	if err := writeAtomic(filepath.Join(s.Dir(), img.ID), metaFile, mustJSON(img)); err != nil {
		t.Fatal(err)
	}
	err = s.VerifySignature(img.ID, pub)
	if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "firmware sign "+img.ID) {
		t.Fatalf("signature-only image: %v, want ErrManifest naming 'firmware sign'", err)
	}
}
