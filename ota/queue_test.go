package ota

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

// inFlight counts c's listed nodes not through yet (failed ones too).
func listedBusy(c *Campaign) int {
	n := 0
	for _, id := range c.Targets.Nodes {
		if p, ok := c.Node(id); !ok || !p.Terminal() {
			n++
		}
	}
	return n
}

// A campaign with MaxConcurrent updates at most that many nodes at a time,
// in the order listed, goes on after a node rolled back, and ends as its
// nodes' outcomes say once the queue is empty.
func TestQueuedCampaignUpdatesAtMostMaxConcurrentAndGoesOnAfterAFailure(t *testing.T) {
	for _, mode := range []Mode{ModeStock, ModePipelined, ModeBroadcast} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRig(t, rigOpts{n: 5, model: sim.Ideal(), seed: 61, initial: "0123456789abcdef0123456789abcdef",
				rcfg: func(id uint32) ReceiverConfig {
					// 101 fails its self-test: it rolls back.
					return ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return id != 101 }}
				}})
			order := []uint32{101, 103, 100, 104, 102}
			c := r.start(CampaignSpec{ID: "q", Image: sensorImage(61), Mode: mode, Nodes: order, MaxConcurrent: 2})
			if len(c.Targets.Nodes) != 2 || len(c.Targets.Queue) != 3 || c.Targets.Nodes[0] != 101 || c.Targets.Nodes[1] != 103 {
				t.Fatalf("at the start: listed %v, queued %v; want the first 2 listed", c.Targets.Nodes, c.Targets.Queue)
			}
			most := 0
			if !r.net.RunUntil(func() bool {
				most = max(most, listedBusy(c))
				return !c.Active()
			}, 2*time.Hour) {
				t.Fatalf("campaign still %s: listed %v queued %v %+v", c.State, c.Targets.Nodes, c.Targets.Queue, c.Nodes())
			}
			t.Logf("at most %d nodes at once, done in %v", most, c.Finished.Sub(c.Started))
			if most > 2 {
				t.Fatalf("%d nodes updated at once, max_concurrent 2", most)
			}
			if c.State != CampaignFailed || !strings.Contains(c.Reason, "1 of 5 nodes rolled back") {
				t.Fatalf("campaign %s (%q), want failed: 1 of 5 nodes rolled back", c.State, c.Reason)
			}
			if !slices.Equal(c.Targets.Nodes, order) || len(c.Targets.Queue) != 0 {
				t.Fatalf("listed %v queued %v, want every node listed in order", c.Targets.Nodes, c.Targets.Queue)
			}
			if got := r.installed(c.Image.MD5); got != 4 {
				t.Fatalf("%d nodes run the image, want 4 (all but 101)", got)
			}
		})
	}
}

// A node that never answers holds its place only for QueueStall; a node
// the gateway knows runs the image already is listed as confirmed without
// a transfer.
func TestQueuedCampaignSkipsSilentAndUpToDateNodes(t *testing.T) {
	img := sensorImage(62)
	want := md5hex(img.Data)
	r := newRig(t, rigOpts{n: 3, model: sim.Ideal(), seed: 62, dcfg: DistributorConfig{
		QueueStall: time.Minute,
		Running: func(node uint32) (string, bool) {
			if node == 102 {
				return want, true
			}
			return "", false
		},
	}})
	// 999 is not in the mesh.
	c := r.start(CampaignSpec{ID: "q", Image: img, Mode: ModePipelined, Nodes: []uint32{999, 102, 100, 101}, MaxConcurrent: 1})
	if !r.net.RunUntil(func() bool { return r.installed(want) == 2 }, time.Hour) {
		t.Fatalf("100 and 101 not updated past a silent node: listed %v queued %v %+v", c.Targets.Nodes, c.Targets.Queue, c.Nodes())
	}
	if p, ok := c.Node(102); !ok || p.State != StateConfirmed {
		t.Fatalf("node 102, up to date already: %+v, want confirmed", p)
	}
	if w := r.stores[102].Writes; w != 0 {
		t.Fatalf("node 102 fetched %d chunks of an image it runs", w)
	}
	if len(c.Targets.Queue) != 0 || c.State != CampaignRunning {
		t.Fatalf("queue %v, state %s: want empty and running (999 never answered)", c.Targets.Queue, c.State)
	}
}

// The queue survives a restart: the snapshot keeps it, and a campaign
// started again from it lists the nodes it had news of and queues the rest.
func TestQueuedCampaignSnapshotRestarts(t *testing.T) {
	listed, queue, err := queueTargets(CampaignSpec{Nodes: []uint32{5, 3, 5, 9, 7}, MaxConcurrent: 2,
		Progress: []NodeProgress{{Node: 9, State: StateDownloading}}})
	if err != nil || !slices.Equal(listed, []uint32{9}) || !slices.Equal(queue, []uint32{5, 3, 7}) {
		t.Fatalf("listed %v queue %v err %v", listed, queue, err)
	}
	r := newRig(t, rigOpts{n: 2, model: sim.Ideal(), seed: 63})
	c := r.start(CampaignSpec{ID: "q", Image: sensorImage(63), Mode: ModePipelined, Nodes: []uint32{100, 101}, MaxConcurrent: 1})
	s := c.Snapshot()
	if s.Targets.MaxConcurrent != 1 || !slices.Equal(s.Targets.Nodes, []uint32{100}) || !slices.Equal(s.Targets.Queue, []uint32{101}) {
		t.Fatalf("snapshot targets %+v", s.Targets)
	}
}

func TestQueuedCampaignRefusals(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 64})
	for _, tc := range []struct {
		spec CampaignSpec
		want string
	}{
		{CampaignSpec{Image: sensorImage(64), Mode: ModePipelined, MaxConcurrent: 2}, "needs a node list"},
		{CampaignSpec{Image: sensorImage(64), Mode: ModePipelined, Nodes: []uint32{100}, MaxConcurrent: -1}, "want 1 or more"},
		{CampaignSpec{Image: sensorImage(64), Mode: ModeStockTurbo, Nodes: []uint32{100}, MaxConcurrent: 1}, "cannot have a node list"},
	} {
		var err error
		r.distND.Step(func(now time.Time, _ sim.Machine) { _, err = r.dist.Start(now, tc.spec) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.spec.MaxConcurrent, err, tc.want)
		}
	}
}
