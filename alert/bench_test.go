package alert

import (
	"testing"
	"time"
)

// BenchmarkObserve is the rules' cost per sample: 200 healthy nodes
// reporting every 30 s, baselines warm.
func BenchmarkObserve(b *testing.B) {
	e := NewEngine(Config{})
	now := epoch
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		node := uint32(i % 200)
		if node == 0 {
			now = now.Add(30 * time.Second)
		}
		up := uint32(now.Sub(epoch)/time.Second) + 100
		e.Observe(now, node, Sample{Uptime: up, FreeMemory: 30_000 + node, LatencyUs: 20_000, LossPermille: 5, RSSI: -60, MessagesDropped: uint32(i / 200)})
	}
}
