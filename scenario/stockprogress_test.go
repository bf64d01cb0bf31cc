package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// stockRig is a fleet of stock receivers (the model of the C++ one) under
// our distributor, recording the campaign events it emits.
type stockRig struct {
	f      *Fleet
	dist   *ota.Distributor
	events []ota.CampaignEvent
	img    []byte
}

func newStockRig(t *testing.T, devices int) *stockRig {
	t.Helper()
	r := &stockRig{dist: ota.NewDistributor(ota.DistributorConfig{}), img: compress.FirmwareLike(20<<10, 1)}
	f, err := Build(Spec{
		Devices: devices, Seed: 3, Model: sim.ESP8266(), Timing: mesh.StockTiming(),
		Root:    Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{r.dist} }},
		FirstID: 100,
		OTA:     OTA{Receiver: StockReceiver, Role: "sensor", Hardware: "ESP8266"},
		OnEvent: func(_ *sim.Node, _ time.Time, ev mesh.Event) {
			if e, ok := ev.(ota.CampaignEvent); ok {
				r.events = append(r.events, e)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Converge(time.Minute); err != nil {
		t.Fatal(err)
	}
	r.f = f
	return r
}

func (r *stockRig) start(t *testing.T) *ota.Campaign {
	t.Helper()
	spec := ota.CampaignSpec{ID: "c", Image: ota.Image{Role: "sensor", Hardware: "ESP8266", Data: r.img},
		Mode: ota.ModeStock, Nodes: r.f.DeviceIDs()}
	var c *ota.Campaign
	var startErr error
	if err := r.f.Root.Step(func(now time.Time, _ sim.Machine) { c, startErr = r.dist.Start(now, spec) }); err != nil || startErr != nil {
		t.Fatal(err, startErr)
	}
	return c
}

// A stock receiver never reports, yet the campaign shows its progress from
// its requests, marked estimated, and ends completed once every node was
// served its last part and went quiet.
func TestStockReceiversProgressAndComplete(t *testing.T) {
	r := newStockRig(t, 4)
	c := r.start(t)
	if !r.f.Net.RunUntil(func() bool { return !c.Active() }, 30*time.Minute) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	if c.State != ota.CampaignCompleted {
		t.Fatalf("campaign %s (%s), want completed", c.State, c.Reason)
	}
	md5 := md5hex(r.img)
	for _, d := range r.f.Devices {
		p, ok := c.Node(d.ID)
		if !ok || p.State != ota.StateInstalled || !p.Estimated || p.Done != p.Total || p.Total == 0 || p.Bytes != int64(len(r.img)) {
			t.Errorf("node %d: %+v, want installed (estimated) with every chunk", d.ID, p)
		}
		if !d.Runs(md5) {
			t.Errorf("node %d does not run the image", d.ID)
		}
		// Its progress went up chunk by chunk, every figure estimated.
		last, steps := -1, 0
		for _, e := range r.events {
			if e.Node != d.ID {
				continue
			}
			if !e.Progress.Estimated {
				t.Errorf("node %d: event not marked estimated: %+v", d.ID, e.Progress)
			}
			if e.Progress.State == ota.StateDownloading {
				if e.Progress.Done < last {
					t.Errorf("node %d: progress went down from %d to %d", d.ID, last, e.Progress.Done)
				}
				last = e.Progress.Done
				steps++
			}
		}
		if steps < p.Total-1 || last != p.Total-1 {
			t.Errorf("node %d: %d downloading events up to chunk %d, want one per chunk up to %d", d.ID, steps, last, p.Total-1)
		}
	}
}

// A stock node reboots 2 s after it wrote the image: once it has left the
// mesh and is back, the campaign counts it installed without waiting for
// its silence.
func TestStockReceiverRebootCountsAsInstalled(t *testing.T) {
	r := newStockRig(t, 2)
	c := r.start(t)
	md5 := md5hex(r.img)
	rebooted := map[uint32]bool{}
	var lastInstall time.Time
	net := r.f.Net
	done := func() bool {
		for _, d := range r.f.Devices {
			if d.Runs(md5) && !rebooted[d.ID] {
				rebooted[d.ID], lastInstall = true, d.Stock.Done
				nd := d.Node
				net.After(2*time.Second, func() { net.Restart(nd) })
			}
		}
		return !c.Active()
	}
	if !net.RunUntil(done, 30*time.Minute) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	if c.State != ota.CampaignCompleted {
		t.Fatalf("campaign %s (%s), want completed", c.State, c.Reason)
	}
	// Rejoining takes a few seconds of node sync; silence would take 45.
	if took := c.Finished.Sub(lastInstall); took > 30*time.Second {
		t.Errorf("campaign ended %s after the last install, want the reboot noticed sooner", took)
	}
}

// A node that asked for chunks and vanished is reported lost with the
// reason, and the campaign ends failed instead of running forever.
func TestStockReceiverLostMidTransfer(t *testing.T) {
	r := newStockRig(t, 3)
	c := r.start(t)
	gone := r.f.Devices[2]
	net := r.f.Net
	if !net.RunUntil(func() bool { p, _ := c.Node(gone.ID); return p.Done >= 3 }, 10*time.Minute) {
		t.Fatalf("node %d never got going: %+v", gone.ID, c.Nodes())
	}
	net.Crash(gone.Node)
	if !net.RunUntil(func() bool { return !c.Active() }, 30*time.Minute) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	p, _ := c.Node(gone.ID)
	if p.State != ota.StateLost || !strings.Contains(p.Err, "left the mesh") {
		t.Errorf("vanished node: %+v, want lost, having left the mesh", p)
	}
	if c.State != ota.CampaignFailed || c.Reason != "1 of 3 nodes lost" {
		t.Errorf("campaign %s (%s), want failed with 1 of 3 lost", c.State, c.Reason)
	}
	for _, d := range r.f.Devices[:2] {
		if p, _ := c.Node(d.ID); p.State != ota.StateInstalled {
			t.Errorf("node %d: %s, want installed", d.ID, p.State)
		}
	}
}

// A node that went away after its last chunk and never came back is not
// counted installed: it is lost, with the reason.
func TestStockReceiverGoneAfterLastChunkIsLost(t *testing.T) {
	r := newStockRig(t, 2)
	c := r.start(t)
	md5 := md5hex(r.img)
	net := r.f.Net
	handled := map[uint32]bool{}
	done := func() bool {
		for i, d := range r.f.Devices {
			if d.Runs(md5) && !handled[d.ID] {
				handled[d.ID] = true
				nd := d.Node
				if i == 0 {
					net.After(2*time.Second, func() { net.Restart(nd) })
				} else {
					net.After(2*time.Second, func() { net.Crash(nd) })
				}
			}
		}
		return !c.Active()
	}
	if !net.RunUntil(done, 30*time.Minute) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	back, _ := c.Node(r.f.Devices[0].ID)
	gone, _ := c.Node(r.f.Devices[1].ID)
	if back.State != ota.StateInstalled || gone.State != ota.StateLost || gone.Err != "left the mesh after its last chunk and was not back within 2m0s" {
		t.Errorf("rebooted node %s, vanished node %s (%s): want installed and lost", back.State, gone.State, gone.Err)
	}
	if c.State != ota.CampaignFailed || c.Reason != "1 of 2 nodes lost" {
		t.Errorf("campaign %s (%s), want failed with 1 of 2 lost", c.State, c.Reason)
	}
}

// An old request task of the C++ receiver (Q-19 j) may repeat its request
// for an earlier part after the node was served its last chunk, while the
// node installs and reboots: the reboot still counts it installed, the
// node is not taken for one that lost its image.
func TestStockStaleRequestAfterLastChunkKeepsTheRebootWatch(t *testing.T) {
	r := newStockRig(t, 1)
	c := r.start(t)
	d := r.f.Devices[0]
	md5 := md5hex(r.img)
	net := r.f.Net
	if !net.RunUntil(func() bool { return d.Runs(md5) }, 10*time.Minute) {
		t.Fatalf("node %d never installed: %+v", d.ID, c.Nodes())
	}
	parts := uint32((len(r.img) + 1023) / 1024)
	stale := &protocol.DataRequest{Announce: protocol.Announce{MD5: md5, Role: "sensor", Hardware: "ESP8266", NoPart: parts},
		Dest: r.f.Root.ID(), PartNo: parts / 2}
	stale.From, stale.Routing = d.ID, protocol.RouteSingle
	if err := d.Node.Step(func(now time.Time, m sim.Machine) { _ = m.(*mesh.Node).SendPackage(now, stale) }); err != nil {
		t.Fatal(err)
	}
	net.After(2*time.Second, func() { net.Restart(d.Node) })
	if !net.RunUntil(func() bool { p, _ := c.Node(d.ID); return p.State == ota.StateDownloading && p.Done == int(parts/2) }, time.Minute) {
		t.Fatalf("the stale request was not seen: %+v", c.Nodes())
	}
	if !net.RunUntil(func() bool { return !c.Active() }, 30*time.Minute) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	if p, _ := c.Node(d.ID); p.State != ota.StateInstalled || c.State != ota.CampaignCompleted {
		t.Fatalf("node %d: %s %q; campaign %s (%s)", d.ID, p.State, p.Err, c.State, c.Reason)
	}
}
