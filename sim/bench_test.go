package sim

import (
	"fmt"
	"testing"
	"time"
)

// benchMesh measures how fast a converged mesh runs: every node syncs as
// stock nodes do (node sync, time sync) and a random node broadcasts every
// second. Reported as virtual seconds per wall second.
func benchMesh(b *testing.B, nodes int, model Model, seed uint64) {
	n := New(Config{Seed: seed, Model: model})
	all, err := n.AddMeshNodes(nodes, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := n.RandomTree(all, model.MaxConn); err != nil {
		b.Fatal(err)
	}
	if !n.RunUntil(n.Converged, 10*time.Minute) {
		b.Fatal("mesh did not converge")
	}
	start, startMsgs := n.Elapsed(), n.Stats().Messages
	k := 0
	for b.Loop() {
		// One iteration: 10 virtual seconds with a broadcast each second.
		for range 10 {
			src := all[n.Rand().IntN(len(all))]
			if err := src.SendBroadcast(fmt.Sprint("bench ", k), false); err != nil {
				b.Fatal(err)
			}
			k++
			n.RunFor(time.Second)
		}
	}
	virtual := (n.Elapsed() - start).Seconds()
	b.ReportMetric(virtual/b.Elapsed().Seconds(), "virtual-s/s")
	b.ReportMetric(float64(n.Stats().Messages-startMsgs)/virtual, "link-msgs/virtual-s")
}

func BenchmarkSim100(b *testing.B) { benchMesh(b, 100, ESP8266(), 1) }

func BenchmarkSim500(b *testing.B) { benchMesh(b, 500, ESP32(), 500) }
