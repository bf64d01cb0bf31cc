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

// slowStore is a receiver's store whose Finish (decode and verify the
// image) does not return until released, as a big image on a slow disk.
type slowStore struct {
	mu      sync.Mutex
	inner   *ota.MemoryStore
	entered chan struct{} // closed when Finish starts
	release chan struct{}
	once    sync.Once
}

func (s *slowStore) lock() func() { s.mu.Lock(); return s.mu.Unlock }

func (s *slowStore) Begin(t ota.Transfer) (ota.Download, error) {
	defer s.lock()()
	return s.inner.Begin(t)
}
func (s *slowStore) Finish(d ota.Download, pub ed25519.PublicKey) error {
	close(s.entered)
	<-s.release
	defer s.lock()()
	return s.inner.Finish(d, pub)
}
func (s *slowStore) Switch() error { defer s.lock()(); return s.inner.Switch() }
func (s *slowStore) Boot(now time.Time) (bool, time.Time, error) {
	defer s.lock()()
	return s.inner.Boot(now)
}
func (s *slowStore) Confirm(now time.Time) error  { defer s.lock()(); return s.inner.Confirm(now) }
func (s *slowStore) Rollback(now time.Time) error { defer s.lock()(); return s.inner.Rollback(now) }
func (s *slowStore) Active() (string, bool)       { defer s.lock()(); return s.inner.Active() }
func (s *slowStore) LastRollback() (string, bool) { defer s.lock()(); return s.inner.LastRollback() }
func (s *slowStore) SecurityCounter() uint64      { defer s.lock()(); return s.inner.SecurityCounter() }
func (s *slowStore) unblock()                     { s.once.Do(func() { close(s.release) }) }

// The receiver's store work runs off the node's loop: while the store
// takes its time over an image, the node keeps relaying, answering time
// sync and serving the application, and the update completes once the
// store answers.
func TestSlowStoreDoesNotBlockTheLoop(t *testing.T) {
	dist := ota.NewDistributor(ota.DistributorConfig{})
	d := start(t, 1, plugins(dist))
	store := &slowStore{inner: ota.NewMemoryStore(""), entered: make(chan struct{}), release: make(chan struct{})}
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
	select {
	case <-store.entered:
	case <-time.After(waitTimeout):
		t.Fatalf("the store was never asked to finish; events: %s", r.describe())
	}

	// The loop answers at once although Finish has not returned.
	quick, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	var state ota.State
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

	store.unblock()
	r.waitFor("the new image confirmed", func(evs []mesh.Event) bool {
		return count(evs, func(ev mesh.Event) bool { p, ok := ev.(ota.Progress); return ok && p.State == ota.StateConfirmed }) > 0
	})
	if active, ok := store.Active(); active != want || !ok {
		t.Fatalf("running %s (confirmed %v), want %s", active, ok, want)
	}
}
