package tcp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func plugins(p ...mesh.Plugin) option {
	return func(c *tcp.Config) { c.Plugins = append(c.Plugins, p...) }
}

// slowStore is a receiver's store whose chunk writes, Finish (decode and
// verify the image) and Confirm do not return until released, as a big
// image on a slow disk.
type slowStore struct {
	mu                  sync.Mutex
	inner               *ota.MemoryStore
	write, finish, conf gate
}

// gate holds up a store call until released.
type gate struct {
	entered chan struct{} // closed when the call starts
	release chan struct{}
	in, out sync.Once
}

func newGate() gate { return gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) wait() {
	g.in.Do(func() { close(g.entered) })
	<-g.release
}
func (g *gate) open() { g.out.Do(func() { close(g.release) }) }

func (s *slowStore) lock() func() { s.mu.Lock(); return s.mu.Unlock }

func (s *slowStore) Begin(t ota.Transfer) (ota.Download, error) {
	defer s.lock()()
	d, err := s.inner.Begin(t)
	return slowDownload{d, s}, err
}
func (s *slowStore) Finish(d ota.Download, pub ed25519.PublicKey) error {
	s.finish.wait()
	defer s.lock()()
	return s.inner.Finish(d.(slowDownload).Download, pub)
}
func (s *slowStore) Switch() error { defer s.lock()(); return s.inner.Switch() }
func (s *slowStore) Boot(now time.Time) (bool, time.Time, error) {
	defer s.lock()()
	return s.inner.Boot(now)
}
func (s *slowStore) Confirm(now time.Time) error {
	s.conf.wait()
	defer s.lock()()
	return s.inner.Confirm(now)
}
func (s *slowStore) Rollback(now time.Time) error { defer s.lock()(); return s.inner.Rollback(now) }
func (s *slowStore) Active() (string, bool)       { defer s.lock()(); return s.inner.Active() }
func (s *slowStore) LastRollback() (string, bool) { defer s.lock()(); return s.inner.LastRollback() }
func (s *slowStore) SecurityCounter() uint64      { defer s.lock()(); return s.inner.SecurityCounter() }
func (s *slowStore) unblock()                     { s.write.open(); s.finish.open(); s.conf.open() }

type slowDownload struct {
	ota.Download
	s *slowStore
}

func (d slowDownload) WriteChunk(i int, data []byte) error {
	d.s.write.wait()
	defer d.s.lock()()
	return d.Download.WriteChunk(i, data)
}

// The receiver's store work runs off the node's loop: while the store
// takes its time over chunk writes, an image or the confirm, the node
// keeps relaying, answering time sync and serving the application; a
// chunk counts as held, and the update completes, once the store answers.
func TestSlowStoreDoesNotBlockTheLoop(t *testing.T) {
	dist := ota.NewDistributor(ota.DistributorConfig{})
	d := start(t, 1, plugins(dist))
	store := &slowStore{inner: ota.NewMemoryStore(""), write: newGate(), finish: newGate(), conf: newGate()}
	rc, err := ota.NewReceiver(ota.ReceiverConfig{Role: "sensor", Hardware: "linux/amd64", Store: store,
		SelfTest: func(string) bool { return true }}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, 2, connectTo(d.addr()), plugins(rc))
	t.Cleanup(store.unblock) // before the nodes stop: a worker in Finish holds up Run
	r.waitNodes(1)

	img := make([]byte, 8000)
	for i := range img {
		img[i] = byte(i * 7)
	}
	sum := md5.Sum(img)
	want := hex.EncodeToString(sum[:])
	ctx := context.Background()
	if err := d.d.Do(ctx, func(now time.Time, _ *mesh.Node) {
		_, err = dist.Start(now, ota.CampaignSpec{Image: ota.Image{Role: "sensor", Hardware: "linux/amd64", Data: img}, Mode: ota.ModePipelined})
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("start campaign: %v", err)
	}
	quick, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	entered := func(g *gate, what string) {
		t.Helper()
		select {
		case <-g.entered:
		case <-time.After(waitTimeout):
			t.Fatalf("the store was never asked to %s; events: %s", what, r.describe())
		}
	}

	// The loop answers although a chunk write has not returned, and the
	// chunk does not count as held yet.
	entered(&store.write, "write a chunk")
	var state ota.State
	held := -1
	if err := r.d.Do(quick, func(now time.Time, n *mesh.Node) {
		state = rc.State()
		_, held, _, _ = rc.Downloading()
	}); err != nil {
		t.Fatalf("the node's loop is blocked while the store writes: %v", err)
	}
	if state != ota.StateDownloading || held != 0 {
		t.Fatalf("receiver %s holding %d chunks while the store writes the first, want downloading, 0", state, held)
	}
	store.write.open()

	// The loop answers at once although Finish has not returned.
	entered(&store.finish, "finish")
	if err := r.d.Do(quick, func(now time.Time, n *mesh.Node) {
		state = rc.State()
		n.StartDelayMeasurement(now, 1)
	}); err != nil {
		t.Fatalf("the node's loop is blocked while the store works: %v", err)
	}
	if state != ota.StateVerifying {
		t.Fatalf("receiver %s while the store verifies, want verifying", state)
	}
	if err := d.d.SendSingle(quick, 2, "while the store works"); err != nil {
		t.Fatal(err)
	}
	r.waitReceived(protocol.TypeSingle, 1, "while the store works")
	r.waitFor("a delay measurement", func(evs []mesh.Event) bool {
		return count(evs, func(ev mesh.Event) bool { m, ok := ev.(mesh.DelayMeasured); return ok && m.NodeID == 1 }) > 0
	})

	store.finish.open()

	// And while the store confirms the new image.
	entered(&store.conf, "confirm")
	if err := r.d.Do(quick, func(now time.Time, n *mesh.Node) { state = rc.State() }); err != nil {
		t.Fatalf("the node's loop is blocked while the store confirms: %v", err)
	}
	if state != ota.StateSwitching {
		t.Fatalf("receiver %s while the store confirms, want switching", state)
	}
	store.conf.open()
	r.waitFor("the new image confirmed", func(evs []mesh.Event) bool {
		return count(evs, func(ev mesh.Event) bool { p, ok := ev.(ota.Progress); return ok && p.State == ota.StateConfirmed }) > 0
	})
	if active, ok := store.Active(); active != want || !ok {
		t.Fatalf("running %s (confirmed %v), want %s", active, ok, want)
	}
}
