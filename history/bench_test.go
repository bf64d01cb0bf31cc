package history

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// BenchmarkIngest is the store's cost per sample of 1,000 nodes at 1 Hz
// (queue, batched transactions, rollups), until the last is written;
// meshfleet bench history runs a whole simulated day and compares it
// with decoding the telemetry.
func BenchmarkIngest(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "history.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const nodes = 1000
	b.ReportAllocs()
	b.ResetTimer()
	// The final Sync is timed too: a sample costs until it is written.
	for i := range b.N {
		x := Sample{Node: uint32(1000 + i%nodes), T: epoch.Add(time.Duration(i/nodes) * time.Second), FreeMemory: uint32(40000 - i%977),
			LatencyUs: 2000, Uptime: uint32(i / nodes), MessagesRx: uint32(i), Hops: 2, Health: 90}
		for !s.AddSample(x) {
			if err := s.Drain(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQueryDay is one node's day at 1-minute steps (the rollups).
func BenchmarkQueryDay(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "history.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for sec := range 86400 {
		for n := range 3 {
			s.AddSample(Sample{Node: uint32(n + 1), T: epoch.Add(time.Duration(sec) * time.Second), FreeMemory: uint32(40000 - sec%977), Hops: 1})
		}
		if sec%10000 == 0 {
			s.Drain(context.Background())
		}
	}
	if err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	now := epoch.Add(24 * time.Hour)
	for b.Loop() {
		ser, err := s.Series(context.Background(), fleet.SeriesQuery{Node: 2, Metric: "free_memory_bytes", From: epoch, To: now, Step: time.Minute}, now)
		if err != nil || len(ser.Points) < 1430 {
			b.Fatalf("%d points, %v", len(ser.Points), err)
		}
	}
}
