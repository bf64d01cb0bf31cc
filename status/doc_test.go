package status

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// TestProtocolNoteExamples keeps PROTOCOL.md honest: every JSON example in
// it decodes and encodes back to the same bytes.
func TestProtocolNoteExamples(t *testing.T) {
	f, err := os.Open("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	seen := map[int]int{}
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		h, err := protocol.ParseHeader([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		seen[h.Type]++
		var p protocol.Package
		if h.Type == protocol.TypeEnhancedStatus {
			p, err = protocol.Decode([]byte(line))
			if err == nil {
				// The stock class has no dest: the collector reads it
				// as a broadcast-base package; re-address to compare.
				var b []byte
				b, err = addressTo(p.AppendJSON(nil), h.Dest)
				if err == nil && string(b) != line {
					t.Errorf("604 example re-encodes as\n%s", b)
				}
				continue
			}
		} else {
			p, err = Decode([]byte(line))
		}
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if got := string(p.AppendJSON(nil)); got != line {
			t.Errorf("example\n%s\nre-encodes as\n%s", line, got)
		}
		if b, ok := p.(*TelemetryBundle); ok {
			// The first entry is the 700 example's keyframe.
			if len(b.Entries) != 2 || b.Entries[0].Node != 3907768579 || b.Entries[0].Waited != 120*time.Millisecond {
				t.Fatalf("bundle example: %+v", b.Entries)
			}
			p = &TelemetryPackage{From: b.Entries[0].Node, Frame: b.Entries[0].Frame}
		}
		if tp, ok := p.(*TelemetryPackage); ok {
			fr, err := telemetry.NewDecoder().Decode(tp.From, tp.Frame)
			if err != nil || fr.Values.Uptime != 86400 || fr.Values.RSSI != -67 || fr.Values.FirmwareHash != FirmwareHash("3.0.1", "9e107d9d372bb6826bd81d3542a419d6") {
				t.Errorf("example frame: %+v, %v", fr, err)
			}
		}
	}
	for _, typ := range []int{TypeTelemetry, TypeTelemetryBundle, TypeStatusQuery, TypeStatusReport, TypeTelemetryControl, protocol.TypeEnhancedStatus} {
		if seen[typ] == 0 {
			t.Errorf("no example of type %d", typ)
		}
	}
}
