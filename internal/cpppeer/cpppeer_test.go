package cpppeer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A stock C++ distributor serves a file through a C++ relay to a stock
// C++ receiver, which writes exactly that file and restarts.
func TestStockOTAThroughRelay(t *testing.T) {
	Build(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	img := make([]byte, 50_000)
	rand.Read(img)
	fw := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(fw, img, 0o644); err != nil {
		t.Fatal(err)
	}
	dist := Start(ctx, t, Config{ID: 1, Listen: true, Root: true, Serve: fw, Role: "sensor", OfferWhen: 3, ProgressEvery: 10})
	relay := Start(ctx, t, Config{ID: 2, Listen: true, Connect: dist.Addr()})
	rxDir := t.TempDir()
	rx := Start(ctx, t, Config{ID: 3, Connect: relay.Addr(), Role: "sensor", Image: filepath.Join(rxDir, "image.bin"), Restart: "exit", ProgressEvery: 10})
	if _, err := dist.WaitEvent(ctx, "offered"); err != nil {
		t.Fatal(err)
	}
	ev, err := rx.WaitEvent(ctx, "md5")
	if err != nil {
		t.Fatal(err)
	}
	if !ev.OK {
		t.Fatalf("receiver's md5 check failed: %+v", ev)
	}
	if _, err := rx.WaitEvent(ctx, "restart"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(rxDir, "image.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("receiver wrote %d bytes, not the served image", len(got))
	}
	state, err := os.ReadFile(filepath.Join(rxDir, "ota_fw.json"))
	if err != nil || !bytes.Contains(state, []byte(ev.MD5)) {
		t.Fatalf("receiver's ota_fw.json %q (%v) does not hold the new md5 %s", state, err, ev.MD5)
	}
}

// Without the vendored sources the peer is reported missing, naming where
// they were looked for, so tests skip with that message.
func TestBuildWithoutVendorSources(t *testing.T) {
	dir := t.TempDir()
	_, err := buildPeer(dir)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "no painlessMesh sources at "+dir) {
		t.Fatalf("error %v, want ErrMissing naming %s", err, dir)
	}
}
