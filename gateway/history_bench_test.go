package gateway

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/history"
	"github.com/meshfleet/meshfleet/status"
)

// BenchmarkHistoryRecorderSample is what recording a status update costs
// the node's loop (the node's health and hops, queueing the sample), for
// a fleet of 1,000; the writer's cost is history's BenchmarkIngest.
func BenchmarkHistoryRecorderSample(b *testing.B) {
	// The writer does not wake during the benchmark (a flush interval of
	// an hour, batches larger than the queue): only the loop's part is
	// timed. Beyond a million samples the queue is full and drops.
	s, err := history.Open(filepath.Join(b.TempDir(), "history.db"), history.Options{QueueSize: 1 << 20, BatchSize: 1 << 21, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := &Gateway{}
	g.hist.store.Store(s)
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	c := status.NewCollector(status.CollectorConfig{}, now)
	const nodes = 1000
	for i := range nodes {
		c.Model().Observe(now, uint32(1000+i), status.SourceTelemetry, func(m *status.Metrics) { m.FreeMemory = 40000; m.Uptime = 10 })
	}
	r := g.newHistoryRecorder(c, nil)
	m := status.Metrics{FreeMemory: 40000, LatencyUs: 2000, Uptime: 10, RSSI: -60, WiFi: 80}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.sample(s, now.Add(time.Duration(i/nodes)*time.Second), uint32(1000+i%nodes), &m)
		i++
	}
}
