package ota

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

func TestDebugBroadcast(t *testing.T) {
	if os.Getenv("OTA_DEBUG") == "" {
		t.Skip()
	}
	m := sim.ESP8266()
	m.Link.Loss = 0.01
	f, _ := os.Create("/tmp/trace.txt")
	defer f.Close()
	r := newRig(t, rigOpts{logDrops: true, trace: f, n: 100, model: m, seed: 1, fanOut: 2, dcfg: DistributorConfig{Radio: Radio{Overhead: 1850 * time.Microsecond, ByteTime: 7600 * time.Nanosecond}}})
	img := testImage(1<<20, 1)
	start := r.net.Now()
	c := r.start(CampaignSpec{ID: "c1", Image: Image{Role: "sensor", Hardware: "ESP32", Data: img}, Mode: ModeBroadcast, Method: "deflate"})
	dc := r.dist.find("c1")
	var pushEnd time.Duration
	last := -1.0
	dumped := false
	last2 := -1.0
	r.net.RunUntil(func() bool {
		if !dc.pushing && pushEnd == 0 {
			pushEnd = r.net.Now().Sub(start)
		}
		if n := r.installed(c.Image.MD5); n%10 == 0 && float64(n) != last2 {
			last2 = float64(n)
			fmt.Printf("%v installed %d\n", r.net.Now().Sub(start), n)
		}
		if !dc.pushing && !dumped {
			dumped = true
			for id, rc := range r.recv {
				if rc.cur != nil {
					fmt.Printf("at push end node %d missing %d want %d stats %+v\n", id, rc.cur.have.Len()-rc.cur.have.Count(), len(rc.cur.want), rc.stats)
				}
			}
		}
		if dc.boost != last {
			fmt.Printf("%v boost %.2f idx %d\n", r.net.Now().Sub(start), dc.boost, dc.pushIdx)
			last = dc.boost
		}
		return r.installed(c.Image.MD5) == len(r.nodes)
	}, time.Hour)
	var done []float64
	for _, e := range r.events {
		if e.State == StateConfirmed {
			done = append(done, 0)
		}
	}
	_ = done
	fmt.Println("push end", pushEnd, "total", r.net.Now().Sub(start), "stats", r.dist.Stats())
	st := r.net.Stats()
	fmt.Println("lost", st.Lost, "qdrops", st.QueueDrops, "msgs", st.Messages)
	var served []int
	for _, rc := range r.recv {
		served = append(served, rc.Stats().ChunksServed)
	}
	sort.Ints(served)
	fmt.Println("served", served)
	for _, nd := range r.net.Nodes() {
		if s := nd.Stats(); s.QueueDrops > 0 {
			fmt.Printf("node %d drops %d maxq %d tx %d\n", nd.ID(), s.QueueDrops, s.MaxQueueBytes, s.TxMessages)
		}
	}
	var fin []int
	for _, e := range r.events {
		if e.State == StateConfirmed {
			fin = append(fin, int(e.Node))
		}
	}
	fmt.Println("confirmed events", len(fin))
	doneAt := map[uint32]time.Duration{}
	for _, e := range r.events {
		if e.State == StateVerifying {
			doneAt[e.Node] = 0
		}
	}
	_ = doneAt
}
