package mesh

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
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

// Well-formed JSON with wrong types or missing fields is counted and
// reported as an invalid body, and still handled as a stock node would.
func TestCoercedPackageCountedAsBody(t *testing.T) {
	for _, msg := range []string{
		`{"type":4,"dest":1,"from":2,"msg":"bad"}`,
		`{"type":"nine","dest":1,"from":2}`,
		`{"dest":1,"from":2}`,
		`{"type":4,"dest":1,"from":2,"msg":{"type":"x"}}`,
		`{"type":9,"dest":"1","from":2,"msg":"x"}`,
		`{"nodeId":2,"subs":[{"nodeId":200,"root":"yes"}],"type":5,"dest":1,"from":2}`,
		`{"type":200,"routing":2,"from":"2"}`,
		`{"type":9,"dest":3,"from":2,"routing":"1","msg":"relayed"}`,
	} {
		p := relayProbe(t, 2)
		rd := p.recv(1, msg)
		s := p.n.Stats()
		if s.InvalidPackages.Body != 1 || s.InvalidPackages.Header != 0 || s.ParseErrors != 1 {
			t.Errorf("%s: stats %+v, parse errors %d", msg, s.InvalidPackages, s.ParseErrors)
		}
		evs := invalidEvents(rd)
		if len(evs) != 1 || evs[0].Reason != InvalidBody || evs[0].NodeID != 2 || !strings.Contains(evs[0].Err, "field") {
			t.Errorf("%s: events %+v", msg, rd.Events)
		}
	}
	// Coercion keeps stock behaviour: a message type "8" is delivered and
	// relayed, counted once.
	p := relayProbe(t, 2)
	rd := p.recv(1, `{"type":"8","dest":0,"from":2,"msg":"hi"}`)
	var got []MessageReceived
	for _, ev := range rd.Events {
		if m, ok := ev.(MessageReceived); ok {
			got = append(got, m)
		}
	}
	if len(got) != 1 || got[0].Msg != "hi" || got[0].Type != protocol.TypeBroadcast {
		t.Errorf("events %+v", rd.Events)
	}
	if len(rd.Messages) != 1 || rd.Messages[0].Conn != 2 {
		t.Errorf("relayed %+v", rd.Messages)
	}
	if s := p.n.Stats(); s.InvalidPackages.Body != 1 {
		t.Errorf("counted %+v", s.InvalidPackages)
	}
}
