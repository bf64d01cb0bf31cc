package stockota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// The scheduler stops a request task on its next pass after the tenth
// request (TaskScheduler's execute: "Disable task on last iteration"),
// so the receiver forgets the md5 right after its tenth request, not one
// interval later.
func TestReceiverForgetsRightAfterTheTenthRequest(t *testing.T) {
	h := &recordingHost{id: 7}
	r := &Receiver{Role: "r", Hardware: "ESP8266"}
	r.Attach(h)
	deliver(t, r, &protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: "m", Role: "r", Hardware: "ESP8266", NoPart: 4})
	now := epoch
	for len(h.sent) < 10 {
		now = now.Add(30 * time.Second)
		r.Tick(now)
	}
	if r.update.md5 != "" || !r.NextDeadline().IsZero() {
		t.Fatalf("after the tenth request: md5 %q, next deadline %v; want forgotten, none", r.update.md5, r.NextDeadline())
	}
}
