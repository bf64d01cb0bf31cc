package ota

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Tests against real painlessMesh C++ nodes (internal/cpppeer) over
// loopback TCP. They skip where g++, Boost or ../shared/vendor are missing.

// goStockDistributor runs our distributor as the mesh root on loopback,
// announcing every second (a stock distributor announces every 60 s).
func goStockDistributor(ctx context.Context, t *testing.T) (*Distributor, *tcp.Driver) {
	t.Helper()
	dist := NewDistributor(DistributorConfig{Compress: Compress, AnnounceInterval: time.Second})
	d, err := tcp.New(tcp.Config{
		Node:    mesh.Config{ID: 1, Root: true, ContainsRoot: true},
		Plugins: []mesh.Plugin{dist},
		Listen:  "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	go func() { // nobody else reads them
		for {
			select {
			case <-d.Events():
			case <-runCtx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return dist, d
}

func startStock(ctx context.Context, t *testing.T, d *tcp.Driver, dist *Distributor, img []byte) time.Time {
	t.Helper()
	var startErr error
	var at time.Time
	err := d.Do(ctx, func(now time.Time, _ *mesh.Node) {
		at = time.Now()
		_, startErr = dist.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: img}, Mode: ModeStock})
	})
	if err != nil || startErr != nil {
		t.Fatalf("start campaign: %v %v", err, startErr)
	}
	return at
}

func randomImage(t *testing.T, n int) []byte {
	img := make([]byte, n)
	if _, err := rand.Read(img); err != nil {
		t.Fatal(err)
	}
	return img
}

// waitImage waits for the receiver's MD5 check and compares its file.
func waitImage(ctx context.Context, t *testing.T, p *cpppeer.Peer, img []byte) cpppeer.Event {
	t.Helper()
	ev, err := p.WaitEvent(ctx, "md5")
	if err != nil {
		t.Fatal(err)
	}
	if !ev.OK {
		t.Fatalf("C++ receiver %d: md5 check failed: %+v", p.Config.ID, ev)
	}
	got, err := os.ReadFile(p.Config.Image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("C++ receiver %d wrote %d bytes, not the image", p.Config.ID, len(got))
	}
	return ev
}

func waitMeshSize(ctx context.Context, t *testing.T, p *cpppeer.Peer, n int) {
	t.Helper()
	if _, err := p.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "nodes" && e.Count >= n }); err != nil {
		t.Fatalf("mesh of %d nodes: %v", n, err)
	}
}

// Our stock mode serves stock C++ receivers in a tree, one of them behind
// a C++ relay: each writes the right image.
func TestStockToCppReceiversInATree(t *testing.T) {
	cpppeer.Build(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dist, d := goStockDistributor(ctx, t)
	img := randomImage(t, 200_000)
	direct := cpppeer.Start(ctx, t, cpppeer.Config{ID: 101, Connect: d.Addr().String(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), ProgressEvery: 50})
	relay := cpppeer.Start(ctx, t, cpppeer.Config{ID: 102, Listen: true, Connect: d.Addr().String()})
	behind := cpppeer.Start(ctx, t, cpppeer.Config{ID: 103, Connect: relay.Addr(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), ProgressEvery: 50})
	waitMeshSize(ctx, t, behind, 4)
	waitMeshSize(ctx, t, direct, 4)

	start := startStock(ctx, t, d, dist, img)
	for _, rx := range []*cpppeer.Peer{direct, behind} {
		ev := waitImage(ctx, t, rx, img)
		t.Logf("C++ receiver %d has the %d-byte image %.2f s after the campaign started", rx.Config.ID, len(img), ev.At.Sub(start).Seconds())
	}
}

// A stock C++ receiver killed mid-transfer starts again and still gets the
// image: the next announce restarts its transfer from the first part.
func TestStockCppReceiverKilledMidTransfer(t *testing.T) {
	cpppeer.Build(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dist, d := goStockDistributor(ctx, t)
	img := randomImage(t, 200_000)
	cfg := cpppeer.Config{ID: 101, Connect: d.Addr().String(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), ProgressEvery: 10}
	rx := cpppeer.Start(ctx, t, cfg)
	waitMeshSize(ctx, t, rx, 2)
	startStock(ctx, t, d, dist, img)
	ev, err := rx.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "part" && e.Part >= 49 })
	if err != nil {
		t.Fatal(err)
	}
	rx.Kill()
	t.Logf("killed the C++ receiver after %d of %d bytes", ev.Bytes, len(img))

	rx = cpppeer.Start(ctx, t, cfg)
	if _, err := rx.WaitEvent(ctx, "started"); err != nil {
		t.Fatal(err)
	}
	waitImage(ctx, t, rx, img)
}

// A stock C++ receiver that joins while a transfer runs gets the image
// too, from the next announce.
func TestStockCppReceiverJoinsLate(t *testing.T) {
	cpppeer.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dist, d := goStockDistributor(ctx, t)
	img := randomImage(t, 200_000)
	early := cpppeer.Start(ctx, t, cpppeer.Config{ID: 101, Connect: d.Addr().String(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), ProgressEvery: 10})
	waitMeshSize(ctx, t, early, 2)
	startStock(ctx, t, d, dist, img)
	if _, err := early.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "part" && e.Part >= 49 }); err != nil {
		t.Fatal(err)
	}
	late := cpppeer.Start(ctx, t, cpppeer.Config{ID: 102, Connect: d.Addr().String(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), ProgressEvery: 10})
	waitImage(ctx, t, early, img)
	waitImage(ctx, t, late, img)
}
