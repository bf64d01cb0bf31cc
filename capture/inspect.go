package capture

import (
	"fmt"

	"github.com/meshfleet/meshfleet/protocol"
)

// MaxReportErrors bounds Report.Errors; further problems are counted in
// the last entry.
const MaxReportErrors = 100

// Report summarises how a capture's messages fare through package
// protocol.
type Report struct {
	Records  int // all records, events included
	Events   int // event records (e.g. "closed")
	Messages int // message records

	// Decoded counts messages Decode accepted: Typed ones became a known
	// package type, Unknown ones a *protocol.Raw (types protocol does not
	// know; relays still forward them).
	Decoded int
	Typed   int
	Unknown int

	// RoundtripIdentical counts typed messages whose re-encoding is
	// byte-identical to the original. Unknown types are not counted: Raw
	// keeps the original bytes, so its re-encoding says nothing.
	RoundtripIdentical int

	// Wrapped counts SINGLE/BROADCAST messages whose msg is itself a
	// package (protocol.Unwrap), by inner type.
	Wrapped map[int]int

	// ByType counts decoded messages by package type (unknown types too).
	ByType map[int]int

	// Errors describes each message that failed to decode or re-encoded
	// differently, at most MaxReportErrors entries.
	Errors []string
}

// Inspect decodes every message of records and compares its re-encoding
// with the original.
func Inspect(records []Record) Report {
	rep := Report{ByType: map[int]int{}, Wrapped: map[int]int{}}
	problems := 0
	addErr := func(format string, args ...any) {
		problems++
		switch {
		case problems < MaxReportErrors:
			rep.Errors = append(rep.Errors, fmt.Sprintf(format, args...))
		case problems == MaxReportErrors:
			rep.Errors = append(rep.Errors, "")
		}
	}
	for i, r := range records {
		rep.Records++
		if !r.IsMessage() {
			rep.Events++
			continue
		}
		rep.Messages++
		p, err := protocol.Decode([]byte(r.Msg))
		if err != nil {
			addErr("record %d (%s): %v: %s", i+1, r, err, clip(r.Msg))
			continue
		}
		rep.Decoded++
		rep.ByType[p.PackageType()]++
		if _, raw := p.(*protocol.Raw); raw {
			rep.Unknown++
			continue
		}
		rep.Typed++
		if inner, ok := protocol.Unwrap(p); ok {
			rep.Wrapped[inner.PackageType()]++
		}
		if got := protocol.Encode(p); string(got) == r.Msg {
			rep.RoundtripIdentical++
		} else {
			addErr("record %d (%s): type %d re-encodes differently:\n  got  %s\n  want %s", i+1, r, p.PackageType(), clip(string(got)), clip(r.Msg))
		}
	}
	if problems >= MaxReportErrors {
		rep.Errors[MaxReportErrors-1] = fmt.Sprintf("... and %d more problems", problems-(MaxReportErrors-1))
	}
	return rep
}

func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:max], len(s))
}
