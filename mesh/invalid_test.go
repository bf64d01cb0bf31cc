package mesh

import (
	"testing"
	"time"
)

func invalidEvents(rd Ready) []InvalidPackage {
	var out []InvalidPackage
	for _, ev := range rd.Events {
		if e, ok := ev.(InvalidPackage); ok {
			out = append(out, e)
		}
	}
	return out
}

// A package that cannot be parsed is counted by reason and reported as an
// event naming the connection and the neighbour.
func TestInvalidPackageCountedAndReported(t *testing.T) {
	p := relayProbe(t, 2)
	rd := p.recv(1, "garbage")
	s := p.n.Stats()
	if s.InvalidPackages.Header != 1 || s.InvalidPackages.Body != 0 || s.ParseErrors != 1 {
		t.Fatalf("stats after a garbage package: %+v", s)
	}
	evs := invalidEvents(rd)
	if len(evs) != 1 || evs[0].Conn != 1 || evs[0].NodeID != 2 || evs[0].Reason != InvalidHeader || evs[0].Err == "" || evs[0].Suppressed != 0 {
		t.Fatalf("events %+v", rd.Events)
	}
}

// A flood of bad packages on one connection gives one event per
// InvalidReportInterval, which counts what it did not report.
func TestInvalidPackageReportsAreRateLimited(t *testing.T) {
	p := relayProbe(t, 2)
	var events []InvalidPackage
	for i := range 10_000 {
		if i%100 == 0 {
			p.now = p.now.Add(time.Second) // 100 s in all
		}
		events = append(events, invalidEvents(p.recv(1, "{nope"))...)
	}
	if s := p.n.Stats(); s.InvalidPackages.Header != 10_000 {
		t.Fatalf("counted %d of 10000", s.InvalidPackages.Header)
	}
	if len(events) != 2 {
		t.Fatalf("%d events for a 100 s flood, want 2 (one per minute)", len(events))
	}
	if events[0].Suppressed != 0 || events[1].Suppressed != 5_999 {
		t.Errorf("suppressed counts %d, %d; want 0, 5999", events[0].Suppressed, events[1].Suppressed)
	}
	// Another connection has its own budget.
	if evs := invalidEvents(p.recv(2, "{nope")); len(evs) != 1 || evs[0].Conn != 2 {
		t.Errorf("other connection: %+v", evs)
	}
}
