package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// TestChunksFromAThirdNodeIgnored: a node that is neither the distributor
// nor the receiver's parent sends chunks of the running transfer with junk
// bytes ahead of the distributor's answers. The receiver drops them and
// completes from the distributor without a failed verification.
func TestChunksFromAThirdNodeIgnored(t *testing.T) {
	// Fan-out 3: 100, 101, 102 hang off the distributor, 103 off 100.
	r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 21})
	const victim, attacker = 103, 101
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(21), Mode: ModePipelined, Method: "deflate"})
	if !r.net.RunUntil(func() bool { _, _, _, ok := r.recv[victim].Downloading(); return ok }, time.Minute) {
		t.Fatal("victim never started the download")
	}
	o := r.dist.find("c").offer
	err := r.net.Node(attacker).Do(func(now time.Time, m *mesh.Node) {
		for i := 0; i < o.Chunks; i++ {
			n := o.ChunkSize
			if i == o.Chunks-1 {
				n = int(o.TSize) - i*o.ChunkSize
			}
			junk := &Chunk{From: attacker, Dest: victim, Routing: int(protocol.RouteSingle), ID: "c", Index: i,
				Data: Dense.EncodeToString(make([]byte, n))}
			if err := m.SendPackage(now, junk); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
	for _, e := range r.events {
		if e.Node == victim && e.State == StateFailed {
			t.Fatalf("victim failed a verification: %s (took the third node's chunks)", e.Err)
		}
	}
	if r.recv[victim].Stats().Rejected == 0 {
		t.Fatal("victim rejected nothing: the junk chunks never reached it")
	}
}

// TestCorruptDeliveriesBackOffThenRetry: three deliveries that fail
// verification stop the downloads of that transfer for a while, not until
// the next restart; the next offer after the backoff fetches it again.
func TestCorruptDeliveriesBackOffThenRetry(t *testing.T) {
	const backoff = 5 * time.Minute
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 22, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: "sensor", Hardware: "ESP32", FailureBackoff: backoff, SelfTest: func(string) bool { return true }}
	}})
	const victim = 101
	r.stores[victim].CorruptTimes = map[int]int{2: 3}
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(22), Mode: ModeBroadcast, Method: "deflate"})
	failures := func() int {
		n := 0
		for _, e := range r.events {
			if e.Node == victim && e.State == StateFailed {
				n++
			}
		}
		return n
	}
	if !r.net.RunUntil(func() bool { return failures() == 3 }, 30*time.Minute) {
		t.Fatalf("victim failed %d times, want 3 corrupt deliveries", failures())
	}
	writes := r.stores[victim].Writes
	r.net.RunFor(backoff - 10*time.Second)
	if r.stores[victim].Writes != writes {
		t.Fatalf("victim fetched %d chunks again within the backoff", r.stores[victim].Writes-writes)
	}
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d: the victim never retried after the backoff", r.installed(c.Image.MD5), len(r.nodes))
	}
	if failures() != 3 {
		t.Fatalf("victim failed %d times, want 3", failures())
	}
}
