package ota

import (
	"fmt"
	"testing"
	"time"
)

func newTrustReceiver(t *testing.T, now time.Time) *Receiver {
	t.Helper()
	// One failure backs a transfer off at once, so every record below is
	// backing off when the table fills.
	r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: NewMemoryStore(""), MaxFailures: 1,
		FailureBackoff: 5 * time.Minute, MaxFailureBackoff: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A full failure table with every transfer backing off forgets the one
// whose backoff ends first, whatever the map's order, and keeps the rest.
func TestFailureTableForgetsTheSoonestBackoff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newTrustReceiver(t, t0)
	for i := range maxFailureRecords {
		// Later failures back off until later.
		if r.verifyFailed(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("t%02d", i)) {
			t.Fatalf("t%02d: fetched again after MaxFailures", i)
		}
	}
	now := t0.Add(maxFailureRecords * time.Second) // all still backing off
	for round := range 3 {
		id := fmt.Sprintf("new%d", round)
		r.verifyFailed(now, id)
		if len(r.failed) != maxFailureRecords {
			t.Fatalf("%s: %d records, want the bound %d", id, len(r.failed), maxFailureRecords)
		}
		gone := fmt.Sprintf("t%02d", round)
		if _, ok := r.failed[gone]; ok {
			t.Fatalf("%s: %s, the soonest backoff, is still recorded", id, gone)
		}
		for i := round + 1; i < maxFailureRecords; i++ {
			if !r.backingOff(now, fmt.Sprintf("t%02d", i)) {
				t.Fatalf("%s: t%02d forgotten, though its backoff ends later than t%02d's", id, i, round)
			}
		}
		if !r.backingOff(now, id) {
			t.Fatalf("%s: not recorded", id)
		}
	}
}

// Among records whose backoffs end at the same time the smallest
// transfer id goes; expired records go before any backing off.
func TestFailureTableTiesAndExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for run := range 20 { // map order differs from run to run
		r := newTrustReceiver(t, t0)
		for i := range maxFailureRecords {
			r.verifyFailed(t0, fmt.Sprintf("t%02d", i))
		}
		r.verifyFailed(t0.Add(time.Second), "late")
		if _, ok := r.failed["t00"]; ok || len(r.failed) != maxFailureRecords {
			t.Fatalf("run %d: tie not broken by the smallest id: t00 kept %v, %d records", run, ok, len(r.failed))
		}
		// Past t00..t63's backoff but not "late"'s: they all expire and
		// "late" stays.
		after := t0.Add(5*time.Minute + time.Millisecond)
		r.verifyFailed(after, "next")
		if len(r.failed) != 2 || !r.backingOff(after, "late") || !r.backingOff(after, "next") {
			t.Fatalf("run %d: after the backoffs ended: %d records, want late and next", run, len(r.failed))
		}
	}
}
