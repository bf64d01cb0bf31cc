package gateway

import (
	"context"
	"testing"

	"github.com/meshfleet/meshfleet/fleet"
)

func TestFanoutSlowSubscriberLosesOldest(t *testing.T) {
	f := newFanout()
	ctx, cancel := context.WithCancel(context.Background())
	slow := f.subscribe(ctx)
	for i := range subscriberBuffer + 10 {
		f.publish(fleet.Event{Message: &fleet.Message{From: uint32(i)}})
	}
	if got := f.dropped.Load(); got != 10 {
		t.Fatalf("dropped %d, want 10", got)
	}
	first := <-slow
	if first.Message.From != 10 {
		t.Fatalf("oldest kept is %d, want 10", first.Message.From)
	}
	cancel()
	for range slow { // closed after cancel
	}
}
