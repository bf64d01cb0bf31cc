package ota

import (
	"bytes"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Campaigns that ended keep their record, not their image: 40 starts of a
// large image, each aborted or superseded, leave the heap within one image
// of where it started.
func TestEndedCampaignsReleaseTheirImage(t *testing.T) {
	const size = 4 << 20
	// The receivers are of another role: they ignore the offers, so only
	// the distributor holds image bytes.
	r := newRig(t, rigOpts{n: 2, model: sim.Ideal(), seed: 31})
	img := testImage(size, 31)
	before := heapAfterGC()
	for i := range 40 {
		// A fresh copy each time, as the gateway reads the image from
		// its store for every start.
		c := r.start(CampaignSpec{Image: Image{Role: "probe", Hardware: "ESP32", Data: bytes.Clone(img)}, Mode: ModePipelined, Method: "deflate"})
		r.net.RunFor(3 * time.Second)
		if i%2 == 0 {
			if err := r.distND.Step(func(now time.Time, _ sim.Machine) {
				if err := r.dist.Abort(now, c.ID); err != nil {
					t.Fatal(err)
				}
			}); err != nil {
				t.Fatal(err)
			}
		} // else the next start supersedes it
	}
	last := r.dist.Campaigns()[len(r.dist.Campaigns())-1]
	if err := r.distND.Step(func(now time.Time, _ sim.Machine) { _ = r.dist.Abort(now, last.ID) }); err != nil {
		t.Fatal(err)
	}
	after := heapAfterGC()
	grown := int64(after) - int64(before)
	t.Logf("heap after 40 campaign starts of a %d MiB image: %.1f MiB (grew %.1f MiB)", size>>20, float64(after)/(1<<20), float64(grown)/(1<<20))
	if limit := int64(size + 2<<20); grown > limit {
		t.Fatalf("heap grew by %d bytes over 40 ended campaigns, want at most one image plus 2 MiB (%d)", grown, limit)
	}
	for _, c := range r.dist.Campaigns() {
		if c.Active() {
			t.Errorf("campaign %s still %s", c.ID, c.State)
		}
	}
	runtime.KeepAlive(img)
}

// Running campaigns of the same image share one copy of its bytes.
func TestRunningCampaignsShareTheImage(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 32})
	img := testImage(100_000, 32)
	a := r.start(CampaignSpec{ID: "a", Image: Image{Role: "probe", Hardware: "ESP32", Data: bytes.Clone(img)}, Mode: ModeStock})
	b := r.start(CampaignSpec{ID: "b", Image: Image{Role: "probe", Hardware: "ESP8266", Data: bytes.Clone(img)}, Mode: ModePipelined, Method: "deflate"})
	if !a.Active() || !b.Active() {
		t.Fatalf("campaigns a %s, b %s: want both running", a.State, b.State)
	}
	ca, cb := r.dist.find("a"), r.dist.find("b")
	if &ca.stock.data[0] != &cb.stock.data[0] {
		t.Fatal("two running campaigns of one image hold two copies of it")
	}
}

// A node's progress counts bytes: bytes is what it holds of the transfer,
// rate_bps those bytes per second since it joined, chunks separately.
func TestNodeProgressCountsBytes(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 33})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(33), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101, 102}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) {
		t.Fatalf("campaign still %s", c.State)
	}
	o := r.dist.find("c").offer
	seen := 0
	for _, ev := range r.cevents {
		p := ev.Progress
		if ev.Node == 0 || p.State != StateDownloading {
			continue
		}
		seen++
		want := min(int64(p.Done)*int64(o.ChunkSize), o.TSize)
		if p.Bytes != want || p.BytesTotal != o.TSize {
			t.Fatalf("node %d at %d/%d chunks: bytes %d of %d, want %d of %d", p.Node, p.Done, p.Total, p.Bytes, p.BytesTotal, want, o.TSize)
		}
		// The rate is in bytes per second: the bytes that came since the
		// campaign started, over the time since.
		el := p.Updated.Sub(c.Started).Seconds()
		if want := float64(p.Bytes) / el; math.Abs(p.Rate-want) > 1e-6*want {
			t.Fatalf("node %d: rate_bps %.1f for %d bytes in %.1f s, want %.1f", p.Node, p.Rate, p.Bytes, el, want)
		}
	}
	if seen == 0 {
		t.Fatal("no download progress seen")
	}
	for _, p := range c.Nodes() {
		if p.Bytes != o.TSize || p.Rate <= 0 || p.ETA != 0 {
			t.Errorf("confirmed node %d: bytes %d (want %d), rate %.1f, eta %v", p.Node, p.Bytes, o.TSize, p.Rate, p.ETA)
		}
	}
}

// A campaign for a role, without a node list, ends once every node that
// took part reached a final state and no new one joined for SettleAfter.
func TestRoleCampaignEnds(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 34, dcfg: DistributorConfig{AnnounceInterval: 10 * time.Second}})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(34), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of 3", r.installed(c.Image.MD5))
	}
	if !r.net.RunUntil(func() bool { return !c.Active() }, 10*time.Minute) {
		t.Fatalf("role campaign still %s with every node confirmed: %+v", c.State, c.Nodes())
	}
	if c.State != CampaignCompleted || c.Reason != "" {
		t.Fatalf("campaign %s (%q), want completed", c.State, c.Reason)
	}
	if got := c.Count(StateConfirmed); got != 3 {
		t.Fatalf("%d nodes confirmed, want 3", got)
	}
}

// A new campaign does not rewrite how an older one ended; one it really
// supersedes is marked so, with the new campaign named.
func TestStartKeepsFinalStateOfOlderCampaigns(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 35})
	done := r.start(CampaignSpec{ID: "done", Image: sensorImage(35), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(done.Image.MD5, time.Hour) || !r.net.RunUntil(func() bool { return done.Count(StateConfirmed) == 3 }, time.Minute) {
		t.Fatalf("campaign done: %+v", done.Nodes())
	}
	// Started before done's quiet period ran out: done still counts as
	// running, but all its nodes are through.
	running := r.start(CampaignSpec{ID: "running", Image: sensorImage(36), Mode: ModeBroadcast, Method: "deflate", Nodes: []uint32{100, 101, 102, 999}})
	if done.State != CampaignCompleted || done.Reason != "" {
		t.Fatalf("fully successful campaign after a new start: %s (%q), want completed", done.State, done.Reason)
	}
	r.net.RunFor(5 * time.Second)
	r.start(CampaignSpec{ID: "next", Image: sensorImage(37), Mode: ModeBroadcast, Method: "deflate"})
	if running.State != CampaignSuperseded || running.Reason != "superseded by campaign next" {
		t.Fatalf("interrupted campaign: %s (%q), want superseded by campaign next", running.State, running.Reason)
	}
	if done.State != CampaignCompleted {
		t.Fatalf("campaign done became %s", done.State)
	}
}

// The distributor keeps the records of the last KeepFinished campaigns
// that ended; running ones are always kept.
func TestEndedCampaignRecordsAreBounded(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 36, dcfg: DistributorConfig{KeepFinished: 3}})
	for i := range 6 {
		hw := "ESP32"
		if i == 0 {
			hw = "ESP8266" // stays running
		}
		r.start(CampaignSpec{ID: string(rune('a' + i)), Image: Image{Role: "probe", Hardware: hw, Data: testImage(1000, uint64(i))}})
	}
	var ids []string
	for _, c := range r.dist.Campaigns() {
		ids = append(ids, c.ID+":"+string(c.State))
	}
	want := []string{"a:running", "c:superseded", "d:superseded", "e:superseded", "f:running"}
	if len(ids) != len(want) {
		t.Fatalf("campaigns %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("campaigns %v, want %v", ids, want)
		}
	}
}

// A restored campaign starts with the per-node progress saved before.
func TestStartRestoresProgress(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 37})
	at := sim.DefaultEpoch.Add(-time.Hour)
	prev := []NodeProgress{{Node: 100, State: StateConfirmed, Done: 8, Total: 8, Bytes: 8000, BytesTotal: 8000, Updated: at, Joined: at}}
	c := r.start(CampaignSpec{ID: "c", Image: Image{Role: "probe", Hardware: "ESP32", Data: testImage(1000, 1)}, Nodes: []uint32{100, 101}, Progress: prev})
	p, ok := c.Node(100)
	if !ok || p.State != StateConfirmed || p.Bytes != 8000 || !p.Updated.Equal(at) {
		t.Fatalf("restored progress %+v (found %v), want %+v", p, ok, prev[0])
	}
	if c.State != CampaignRunning {
		t.Fatalf("campaign %s, want running (node 101 has not reported)", c.State)
	}
}

// A node that starts over (it lost what it held) gets a fresh rate.
func TestNodeProgressRateRestartsWithTheNode(t *testing.T) {
	v := newVariant(make([]byte, 10_000), 1000, "img", "none")
	t0 := sim.DefaultEpoch
	c := &Campaign{ID: "c", State: CampaignRunning, Started: t0, nodes: map[uint32]*NodeProgress{}}
	rep := func(at time.Duration, have int) NodeProgress {
		p, _ := c.update(t0.Add(at), 7, &Report{ID: "c", State: string(StateDownloading), Have: have, Total: 10}, v)
		return p
	}
	if p := rep(2*time.Second, 2); p.Rate != 1000 {
		t.Fatalf("first report, 2 chunks 2 s after the start: %+v, want 1000 B/s", p)
	}
	if p := rep(6*time.Second, 6); p.Rate != 1000 || p.Bytes != 6000 || p.ETA != 4*time.Second {
		t.Fatalf("6 chunks after 6 s: %+v, want 1000 B/s, 6000 bytes, 4 s to go", p)
	}
	rep(time.Hour, 1) // started over an hour later
	if p := rep(time.Hour+2*time.Second, 3); p.Rate != 1000 {
		t.Fatalf("after starting over: %+v, want 1000 B/s since the new start", p)
	}
}

// Starts of one image in the same instant get distinct default ids.
func TestDefaultCampaignIDsAreDistinct(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 38})
	img := Image{Role: "probe", Hardware: "ESP32", Data: testImage(1000, 1)}
	var ids []string
	if err := r.distND.Step(func(now time.Time, _ sim.Machine) {
		for range 3 {
			c, err := r.dist.Start(now, CampaignSpec{Image: img})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Fatalf("ids %v, want distinct", ids)
	}
}
