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
