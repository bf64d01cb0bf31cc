package status

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// BenchmarkCollectorFrame is the root's cost per telemetry package: JSON
// header and body, base64, frame decode, model update, alert rules.
func BenchmarkCollectorFrame(b *testing.B) {
	const nodes = 200
	col := NewCollector(CollectorConfig{}, epoch)
	m := newFakeMesh(nil)
	col.Attach(m.add(rootID, true))
	encs := make([]*telemetry.Encoder, nodes)
	for i := range encs {
		encs[i] = telemetry.NewEncoder(telemetry.EncoderConfig{})
	}
	msgs := make([][]byte, 0, nodes*10)
	now := epoch
	for round := 0; round < 10; round++ {
		now = now.Add(30 * time.Second)
		for i, e := range encs {
			v := telemetry.Values{Uptime: uint32(30 * round), FreeMemory: 30_000 + uint32(i), MessagesRx: uint32(round * 100), Interval: 30}
			p := TelemetryPackage{From: uint32(5000 + i), Dest: rootID, Frame: e.Encode(now, 0, v, false)}
			msgs = append(msgs, p.AppendJSON(nil))
		}
	}
	hdr := protocol.Header{Type: TypeTelemetry}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(msgs) == 0 {
			col = NewCollector(CollectorConfig{}, epoch)
			col.Attach(m.nodes[rootID])
			m.nodes[rootID].events = nil
			m.nodes[rootID].eventTimes = nil
		}
		col.HandlePackage(epoch.Add(time.Duration(i)*time.Millisecond), 1, hdr, msgs[i%len(msgs)])
	}
}

// BenchmarkReporterFrame is a node's cost per telemetry frame.
func BenchmarkReporterFrame(b *testing.B) {
	m := newFakeMesh(nil)
	m.add(rootID, true)
	r := NewReporter(ReporterConfig{Interval: time.Second}, epoch)
	m.add(nodeA, false, r)
	m.links[rootID] = []uint32{nodeA}
	m.links[nodeA] = []uint32{rootID}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.sendFrame(epoch.Add(time.Duration(i)*time.Second), false)
		m.queue = m.queue[:0]
		m.nodes[nodeA].sent = m.nodes[nodeA].sent[:0]
	}
}
