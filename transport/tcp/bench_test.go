package tcp_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// BenchmarkSingleThroughput measures SINGLE messages from one node to its
// neighbour over loopback TCP: app call, loop, writer, socket, reader,
// loop and event delivery on the other side.
func BenchmarkSingleThroughput(b *testing.B) {
	a := startCollecting(b, 1, false, eventBuffer(1<<16))
	peer := startCollecting(b, 2, false, connectTo(a.addr()), noListen(), eventBuffer(1<<16))
	synced := false
	for !synced {
		select {
		case ev := <-peer.d.Events():
			_, synced = ev.(mesh.NewConnection)
		case <-time.After(waitTimeout):
			b.Fatal("no sync")
		}
	}
	ctx := context.Background()
	msg := "sensor reading 21.5C humidity 40%"
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		got := 0
		for ev := range a.d.Events() {
			if m, ok := ev.(mesh.MessageReceived); ok && m.From == 2 {
				got++
			}
			// Events dropped because this reader fell behind were
			// delivered by the node all the same.
			if got+int(a.d.Stats().EventsDropped) >= b.N {
				return
			}
		}
	}()
	for range b.N {
		if err := peer.d.SendSingle(ctx, 1, msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		b.Fatalf("not all %d messages arrived; receiver %+v, sender %+v", b.N, a.d.Stats(), peer.d.Stats())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if dropped := a.d.Stats().EventsDropped; dropped > 0 {
		b.ReportMetric(float64(dropped), "events-dropped")
	}
}
