package ota

import (
	"bytes"
	"compress/flate"
	"crypto/md5"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// testImage is a deterministic image that compresses like firmware does
// (runs of repeated bytes between random stretches).
func testImage(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, size)
	for len(b) < size {
		if rng.IntN(2) == 0 {
			c := byte(rng.IntN(256))
			for n := rng.IntN(64); n > 0 && len(b) < size; n-- {
				b = append(b, c)
			}
		} else {
			for n := rng.IntN(64); n > 0 && len(b) < size; n-- {
				b = append(b, byte(rng.IntN(256)))
			}
		}
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// testCompress / testDecode stand in for package compress in unit tests.
func testCompress(method string, img []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(img)
	w.Close()
	return buf.Bytes(), nil
}

func testDecode(method string, r io.Reader) (io.Reader, error) { return flate.NewReader(r), nil }

type rig struct {
	t        *testing.T
	net      *sim.Network
	dist     *Distributor
	distND   *sim.Node
	nodes    []*sim.Node // receivers
	stores   map[uint32]*MemoryStore
	recv     map[uint32]*Receiver
	events   []Progress
	cevents  []CampaignEvent // the distributor's
	rcfg     func(id uint32) ReceiverConfig
	logDrops bool
}

type rigOpts struct {
	n        int
	model    sim.Model
	seed     uint64
	fanOut   int
	dcfg     DistributorConfig
	rcfg     func(id uint32) ReceiverConfig
	initial  string // md5 installed on receivers
	trace    io.Writer
	logDrops bool
	workTime time.Duration // sim.Config.WorkTime: how long store work takes
	echo     *echo         // deliver OTA packages twice, the copy late (echo_test.go)
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, stores: map[uint32]*MemoryStore{}, recv: map[uint32]*Receiver{}, rcfg: o.rcfg, logDrops: o.logDrops}
	r.net = sim.New(sim.Config{Seed: o.seed, Model: o.model, Trace: o.trace, WorkTime: o.workTime, OnEvent: func(n *sim.Node, at time.Time, ev mesh.Event) {
		if p, ok := ev.(Progress); ok {
			r.events = append(r.events, p)
		}
		if c, ok := ev.(CampaignEvent); ok {
			r.cevents = append(r.cevents, c)
		}
		if d, ok := ev.(mesh.DroppedConnection); ok && r.logDrops {
			r.t.Logf("%v node %d dropped %d: %s", at.Sub(sim.DefaultEpoch), n.ID(), d.NodeID, d.Reason)
		}
	}})
	if o.dcfg.Compress == nil {
		o.dcfg.Compress = testCompress
	}
	r.dist = NewDistributor(o.dcfg)
	var err error
	r.distND, err = r.net.AddNode(o.echo.spec(sim.NodeSpec{Config: mesh.Config{ID: 1, Root: true, ContainsRoot: true},
		Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{r.dist} }}))
	if err != nil {
		t.Fatal(err)
	}
	all := []*sim.Node{r.distND}
	for i := 0; i < o.n; i++ {
		id := uint32(100 + i)
		st := NewMemoryStore(o.initial)
		st.Decode = testDecode
		r.stores[id] = st
		nd, err := r.net.AddNode(o.echo.spec(sim.NodeSpec{Config: mesh.Config{ID: id}, Plugins: func(nd *sim.Node) []mesh.Plugin {
			cfg := ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return true }}
			if r.rcfg != nil {
				cfg = r.rcfg(id)
			}
			cfg.Store = r.stores[id]
			cfg.Seed = uint64(id)
			rc, err := NewReceiver(cfg, nd.Network().Now())
			if err != nil {
				t.Fatal(err)
			}
			r.recv[id] = rc
			return []mesh.Plugin{rc}
		}}))
		if err != nil {
			t.Fatal(err)
		}
		r.nodes = append(r.nodes, nd)
		all = append(all, nd)
	}
	fan := o.fanOut
	if fan == 0 {
		fan = 3
	}
	if err := r.net.Tree(all, fan, 0); err != nil {
		t.Fatal(err)
	}
	if !r.net.RunUntil(r.net.Converged, 5*time.Minute) {
		t.Fatal("mesh did not converge")
	}
	return r
}

func (r *rig) start(spec CampaignSpec) *Campaign {
	r.t.Helper()
	var c *Campaign
	err := r.distND.Step(func(now time.Time, m sim.Machine) {
		var err error
		c, err = r.dist.Start(now, spec)
		if err != nil {
			r.t.Fatal(err)
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// installed counts receivers running md5 (confirmed).
func (r *rig) installed(md5 string) int {
	n := 0
	for _, st := range r.stores {
		if a, ok := st.Active(); a == md5 && ok {
			n++
		}
	}
	return n
}

func (r *rig) runUntilInstalled(md5 string, limit time.Duration) bool {
	return r.net.RunUntil(func() bool { return r.installed(md5) == len(r.nodes) }, limit)
}
