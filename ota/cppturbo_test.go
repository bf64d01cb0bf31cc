package ota

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Stock-turbo against real painlessMesh C++ receivers (internal/cpppeer)
// over loopback TCP; they skip where g++, Boost or ../shared/vendor are
// missing.

// startMode starts a campaign of img in mode on the Go distributor.
func startMode(ctx context.Context, t *testing.T, d *tcp.Driver, dist *Distributor, img []byte, mode Mode) time.Time {
	t.Helper()
	var startErr error
	var at time.Time
	err := d.Do(ctx, func(now time.Time, _ *mesh.Node) {
		at = time.Now()
		_, startErr = dist.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: img}, Mode: mode})
	})
	if err != nil || startErr != nil {
		t.Fatalf("start %s campaign: %v %v", mode, err, startErr)
	}
	return at
}

// cppTree is a Go distributor and five stock C++ receivers: four joined
// to it, one behind a C++ relay.
type cppTree struct {
	dist      *Distributor
	d         *tcp.Driver
	relay     *cpppeer.Peer
	receivers []*cpppeer.Peer
}

func startCppTree(ctx context.Context, t *testing.T) *cppTree {
	t.Helper()
	dist, d := goStockDistributor(ctx, t)
	tr := &cppTree{dist: dist, d: d}
	rx := func(id uint32, connect string) *cpppeer.Peer {
		return cpppeer.Start(ctx, t, cpppeer.Config{ID: id, Connect: connect, Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), Restart: "reboot", ProgressEvery: 50})
	}
	for id := uint32(101); id <= 104; id++ {
		tr.receivers = append(tr.receivers, rx(id, d.Addr().String()))
	}
	tr.relay = cpppeer.Start(ctx, t, cpppeer.Config{ID: 110, Listen: true, Connect: d.Addr().String()})
	tr.receivers = append(tr.receivers, rx(111, tr.relay.Addr()))
	tr.waitWhole(ctx, t)
	return tr
}

// waitWhole waits until every receiver sees the whole mesh: the
// distributor, the relay and the five receivers.
func (tr *cppTree) waitWhole(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, rx := range tr.receivers {
		waitMeshSize(ctx, t, rx, 7)
	}
}

// deliver runs a campaign of img in mode and waits until every receiver
// wrote the image and checked its MD5 (and, with rejoin, came back from
// its reboot); it returns the time from the start to the last receiver's
// MD5 check.
func (tr *cppTree) deliver(ctx context.Context, t *testing.T, img []byte, mode Mode, rejoin bool) time.Duration {
	t.Helper()
	start := startMode(ctx, t, tr.d, tr.dist, img, mode)
	var last time.Time
	for _, rx := range tr.receivers {
		ev := waitImage(ctx, t, rx, img)
		if ev.At.After(last) {
			last = ev.At
		}
	}
	if rejoin {
		for _, rx := range tr.receivers {
			if _, err := rx.WaitEvent(ctx, "restart"); err != nil {
				t.Fatal(err)
			}
		}
		tr.waitWhole(ctx, t)
	}
	return last.Sub(start)
}

// A Go distributor serves a 200 KB image with stock-turbo to five stock
// C++ receivers in a tree (one behind a C++ relay), and another 200 KB
// image with plain stock to the same tree: every receiver writes each
// image with the right MD5. Both times are logged, as figures.
func TestStockTurboToCppReceiversInATree(t *testing.T) {
	cpppeer.Build(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr := startCppTree(ctx, t)
	turbo := tr.deliver(ctx, t, randomImage(t, 200_000), ModeStockTurbo, true)
	stock := tr.deliver(ctx, t, randomImage(t, 200_000), ModeStock, false)
	t.Logf("200000-byte image to 5 C++ receivers (one behind a C++ relay) on loopback, from the campaign's start to the last MD5 check: stock-turbo %.2f s, stock %.2f s", turbo.Seconds(), stock.Seconds())
}

// Under stock-turbo a C++ receiver killed mid-transfer and started again
// (its transfer was in RAM: it starts over) and one that joins while the
// main stream runs both complete with the right image, beside one that
// saw the whole stream.
func TestStockTurboCppReceiverKilledAndLateJoiner(t *testing.T) {
	cpppeer.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dist, d := goStockDistributor(ctx, t)
	img := randomImage(t, 50_000)
	cfg := func(id uint32) cpppeer.Config {
		return cpppeer.Config{ID: id, Connect: d.Addr().String(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), Restart: "exit"}
	}
	steady := cpppeer.Start(ctx, t, cfg(101))
	killedCfg := cfg(102)
	killed := cpppeer.Start(ctx, t, killedCfg)
	waitMeshSize(ctx, t, steady, 3)
	waitMeshSize(ctx, t, killed, 3)
	start := startMode(ctx, t, d, dist, img, ModeStockTurbo)
	parts := (len(img) + turboPartSize - 1) / turboPartSize
	ev, err := killed.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "part" && e.Part >= parts*2/5 })
	if err != nil {
		t.Fatal(err)
	}
	killed.Kill()
	t.Logf("killed C++ receiver 102 after %d of %d bytes", ev.Bytes, len(img))
	killed = cpppeer.Start(ctx, t, killedCfg)
	late := cpppeer.Start(ctx, t, cfg(103))
	for _, rx := range []*cpppeer.Peer{steady, killed, late} {
		ev := waitImage(ctx, t, rx, img)
		t.Logf("C++ receiver %d has the image %.2f s after the campaign started", rx.Config.ID, ev.At.Sub(start).Seconds())
	}
}
