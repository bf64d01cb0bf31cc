package ota

import (
	"crypto/ed25519"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
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

var (
	testPub, testKey = testKeyPair(1)
	_, otherKey      = testKeyPair(2)
)

func testKeyPair(seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, _ := ed25519.GenerateKey(rand.NewChaCha8([32]byte{seed}))
	return pub, priv
}

// signed attaches a manifest for role/hardware with counter to img, and
// the older signature over the bytes, both with key.
func signed(t *testing.T, img Image, key ed25519.PrivateKey, role, hardware string, counter uint64, downgrade bool) Image {
	t.Helper()
	m := firmware.NewManifest(img.Data, firmware.Meta{Role: role, Hardware: hardware, Version: "v" + strconv.FormatUint(counter, 10)}, counter, downgrade)
	var err error
	if img.Manifest, img.ManifestSig, err = firmware.SignManifest(m, key); err != nil {
		t.Fatal(err)
	}
	img.Signature = ed25519.Sign(key, img.Data)
	return img
}

func keyedRig(t *testing.T, role string, n int, seed uint64) *rig {
	return newRig(t, rigOpts{n: n, model: sim.ESP8266(), seed: seed, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: role, Hardware: "ESP32", PublicKey: testPub, SelfTest: func(string) bool { return true }}
	}})
}

// refusedBy checks that every receiver refused campaign id without
// fetching a chunk, and that the distributor holds the reason, which
// contains want.
func (r *rig) refusedBy(id, want string) {
	r.t.Helper()
	c := r.dist.find(id).Campaign
	for _, nd := range r.nodes {
		p, ok := c.Node(nd.ID())
		if !ok || p.State != StateRefused || !strings.Contains(p.Err, want) {
			r.t.Fatalf("node %d at the distributor: %+v (known %v), want refused with %q", nd.ID(), p, ok, want)
		}
		if w := r.stores[nd.ID()].Writes; w != 0 {
			r.t.Fatalf("node %d fetched %d chunks of a refused image", nd.ID(), w)
		}
	}
}

func TestGoodManifestAccepted(t *testing.T) {
	for _, mode := range []Mode{ModeStock, ModePipelined, ModeBroadcast} {
		t.Run(string(mode), func(t *testing.T) {
			r := keyedRig(t, "sensor", 3, 12)
			c := r.start(CampaignSpec{ID: "c", Image: signed(t, sensorImage(13), testKey, "sensor", "ESP32", 1, false), Mode: mode, Method: "deflate"})
			if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
				t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
			}
			for id, st := range r.stores {
				if got := st.SecurityCounter(); got != 1 {
					t.Fatalf("node %d: security counter %d after confirming counter 1", id, got)
				}
			}
		})
	}
}

func TestManifestSignedByAnotherKeyRefused(t *testing.T) {
	r := keyedRig(t, "sensor", 3, 12)
	c := r.start(CampaignSpec{ID: "c", Image: signed(t, sensorImage(13), otherKey, "sensor", "ESP32", 1, false), Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunFor(10 * time.Minute)
	if n := r.installed(c.Image.MD5); n != 0 {
		t.Fatalf("badly signed image installed on %d nodes", n)
	}
	r.refusedBy("c", "signature does not verify")
}

// TestSignatureOnlyImageRefused: an image signed the older way (over its
// bytes, no manifest) binds neither target nor counter; a receiver with a
// key refuses it and says why.
func TestSignatureOnlyImageRefused(t *testing.T) {
	r := keyedRig(t, "sensor", 3, 12)
	img := sensorImage(13)
	img.Signature = ed25519.Sign(testKey, img.Data)
	c := r.start(CampaignSpec{ID: "c", Image: img, Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunFor(10 * time.Minute)
	if n := r.installed(c.Image.MD5); n != 0 {
		t.Fatalf("signature-only image installed on %d nodes", n)
	}
	r.refusedBy("c", "not signed with a manifest")
}

// TestSensorImagePushedToProbeRefused is the cross-role attack: a sensor
// image correctly signed for the sensor role, pushed with --role probe.
func TestSensorImagePushedToProbeRefused(t *testing.T) {
	r := keyedRig(t, "probe", 3, 23)
	img := signed(t, sensorImage(23), testKey, "sensor", "ESP32", 1, false)
	img.Role = "probe"
	c := r.start(CampaignSpec{ID: "c", Image: img, Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunFor(5 * time.Minute)
	if n := r.installed(c.Image.MD5); n != 0 {
		t.Fatalf("sensor image installed on %d probe nodes", n)
	}
	r.refusedBy("c", `signed for role "sensor" hardware "ESP32", this node is role "probe"`)
	if r.recv[100].Stats().Refused == 0 {
		t.Fatal("receiver counted no refusal")
	}
}

// TestLowerSecurityCounterRefused is the rollback attack: after an image
// with counter 7 is confirmed, an older correctly signed image (counter 6)
// pushed again is refused.
func TestLowerSecurityCounterRefused(t *testing.T) {
	r := keyedRig(t, "sensor", 3, 24)
	c7 := r.start(CampaignSpec{ID: "c7", Image: signed(t, sensorImage(70), testKey, "sensor", "ESP32", 7, false), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(c7.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c7.Image.MD5), len(r.nodes))
	}
	for _, st := range r.stores {
		st.Writes = 0
	}
	c6 := r.start(CampaignSpec{ID: "c6", Image: signed(t, sensorImage(60), testKey, "sensor", "ESP32", 6, false), Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunFor(10 * time.Minute)
	if n := r.installed(c6.Image.MD5); n != 0 {
		t.Fatalf("older image installed on %d nodes", n)
	}
	r.refusedBy("c6", "security counter 6 is below this node's 7")
}

// TestSignedDowngradeAccepted: the operator signs the older image as a
// downgrade on purpose; it installs, and the node's counter stays.
func TestSignedDowngradeAccepted(t *testing.T) {
	r := keyedRig(t, "sensor", 3, 25)
	for _, st := range r.stores {
		st.SetSecurityCounter(7)
	}
	c := r.start(CampaignSpec{ID: "c", Image: signed(t, sensorImage(60), testKey, "sensor", "ESP32", 6, true), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("signed downgrade installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
	for id, st := range r.stores {
		if got := st.SecurityCounter(); got != 7 {
			t.Fatalf("node %d: security counter %d after a downgrade, want it kept at 7", id, got)
		}
	}
}

// TestKeyedReceiverIgnoresStockAnnounce: a stock announce carries no
// manifest, so a receiver with a key does not fetch it.
func TestKeyedReceiverIgnoresStockAnnounce(t *testing.T) {
	r := newRig(t, rigOpts{n: 2, model: sim.ESP8266(), seed: 26, dcfg: DistributorConfig{StockOnly: true}, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: "sensor", Hardware: "ESP32", PublicKey: testPub, SelfTest: func(string) bool { return true }}
	}})
	r.start(CampaignSpec{ID: "c", Image: sensorImage(26)})
	r.net.RunFor(5 * time.Minute)
	for id, st := range r.stores {
		if st.Writes != 0 {
			t.Fatalf("node %d fetched %d chunks of a stock announce", id, st.Writes)
		}
	}
}

// TestChunkSources walks the rule chunk by chunk on one receiver: its
// parent repairs (routing 0) and the distributor sends; its child, a
// bystander, or its parent posing as a unicast sender do not.
func TestChunkSources(t *testing.T) {
	p := newRepairProbe(t)
	const bystander = 9
	send := func(from uint32, routing protocol.Routing, i int) {
		c := &Chunk{From: from, Routing: int(routing), ID: probeID, Index: i, Data: Dense.EncodeToString(p.data[i])}
		if routing != protocol.RouteBroadcast {
			c.Dest = 10
		}
		p.recv(c)
	}
	for _, c := range []struct {
		from    uint32
		routing protocol.Routing
		taken   bool
	}{
		{probeChild, protocol.RouteNeighbour, false},
		{bystander, protocol.RouteSingle, false},
		{bystander, protocol.RouteBroadcast, false},
		{probeParent, protocol.RouteSingle, false},
		{probeParent, protocol.RouteNeighbour, true},
		{probeDist, protocol.RouteSingle, true},
	} {
		_, before, _, _ := p.r.Downloading()
		send(c.from, c.routing, 0)
		_, after, _, _ := p.r.Downloading()
		if taken := after > before; taken != c.taken {
			t.Errorf("chunk from %d with routing %d: taken %v, want %v", c.from, c.routing, taken, c.taken)
		}
		if c.taken {
			p = newRepairProbe(t) // chunk 0 again on an empty transfer
		}
	}
}
