package status

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

const (
	rootID = 1000
	nodeA  = 2001
	nodeB  = 2002
)

// memory is a settable free-memory provider.
type memory struct{ free uint32 }

func (m *memory) read(time.Time) uint32 { return m.free }

func reporterProviders(mem *memory) Providers {
	return Providers{
		Firmware:   func() (string, string) { return "2.1.0", "0123456789abcdef0123456789abcdef" },
		FreeMemory: mem.read,
		RSSI:       func(time.Time) int8 { return -62 },
		OTA:        func() (OTAState, uint8) { return OTADownloading, 40 },
	}
}

// rootSink is a plugin on the root that records the frames it receives.
type rootSink struct {
	dec    *telemetry.Decoder
	frames []telemetry.Frame
	errs   []error
	times  []time.Time
}

func (s *rootSink) Attach(h mesh.Host)          {}
func (s *rootSink) Types() []int                { return []int{TypeTelemetry} }
func (s *rootSink) Tick(time.Time)              {}
func (s *rootSink) NextDeadline() (t time.Time) { return t }
func (s *rootSink) HandlePackage(now time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) {
	p, err := Decode(raw)
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	f, err := s.dec.Decode(h.From, p.(*TelemetryPackage).Frame)
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	s.frames = append(s.frames, f)
	s.times = append(s.times, now)
}

func TestReporterStreamsMeasuredValues(t *testing.T) {
	m := newFakeMesh(t)
	sink := &rootSink{dec: telemetry.NewDecoder()}
	m.add(rootID, true, sink)
	mem := &memory{free: 48_000}
	r := NewReporter(ReporterConfig{Interval: 30 * time.Second, Providers: reporterProviders(mem)}, m.now)
	a := m.add(nodeA, false, r)
	m.add(nodeB, false)
	m.link(rootID, nodeA)
	m.link(nodeA, nodeB)

	// The first frame goes out when the link comes up (0 s); then the
	// counters move: 90 sent and 10 dropped, 6000 bytes, by the next (30 s).
	m.run(epoch.Add(time.Second))
	a.stats.MessagesTx, a.stats.MessagesDropped = 90, 10
	a.stats.BytesRx, a.stats.BytesTx = 3000, 3000
	m.run(epoch.Add(66 * time.Second))

	// Frames at 0 s (the link came up), 30 s, 60 s.
	if len(sink.frames) != 3 {
		t.Fatalf("got %d frames, errors %v", len(sink.frames), sink.errs)
	}
	for i, want := range []time.Duration{0, 30 * time.Second, 60 * time.Second} {
		if got := sink.times[i].Sub(epoch); got != want {
			t.Errorf("frame %d at %v, want %v", i, got, want)
		}
	}
	v := sink.frames[2].Values
	if v.Uptime != 60 || v.FreeMemory != 48_000 || v.Connections != 2 || v.Nodes != 2 {
		t.Errorf("uptime %d mem %d conns %d nodes %d", v.Uptime, v.FreeMemory, v.Connections, v.Nodes)
	}
	// The fake host's own sends count too: 90 + the frames before this one.
	if v.MessagesRx != uint32(a.stats.MessagesRx) || v.MessagesDropped != 10 {
		t.Errorf("counters rx %d drop %d", v.MessagesRx, v.MessagesDropped)
	}
	if v.RSSI != -62 || v.WiFi != 76 || v.OTAState != uint8(OTADownloading) || v.OTAProgress != 40 {
		t.Errorf("radio/ota %+v", v)
	}
	if v.FirmwareHash != FirmwareHash("2.1.0", "0123456789abcdef0123456789abcdef") || v.Interval != 30 {
		t.Errorf("firmware hash %x interval %d", v.FirmwareHash, v.Interval)
	}
	if v.Latency != 2500 {
		t.Errorf("latency %d µs, want the measured 2500", v.Latency)
	}
	if len(a.probes) == 0 || a.probes[0] != rootID {
		t.Errorf("delay probes %v, want to the root %d", a.probes, rootID)
	}
	// Second frame (30 s): 90 tx + 10 drop in its window → 100 ‰; 6000
	// bytes in 30 s. The first frame had no window yet.
	if got := sink.frames[1].Values.LossPermille; got != 100 {
		t.Errorf("loss %d ‰, want 100", got)
	}
	if got := sink.frames[1].Values.Throughput; got != 6000/30 {
		t.Errorf("throughput %d B/s, want %d", got, 6000/30)
	}
	if f := sink.frames[0].Values; f.LossPermille != 0 || f.Throughput != 0 {
		t.Errorf("first frame loss %d throughput %d", f.LossPermille, f.Throughput)
	}
	if !sink.frames[0].Keyframe || sink.frames[1].Keyframe {
		t.Errorf("keyframe flags %v %v", sink.frames[0].Keyframe, sink.frames[1].Keyframe)
	}
	// Traffic: the frames as sent, plus one TIME_DELAY request per probe
	// as the node encodes it.
	tr := r.Traffic()
	var bytes uint64
	for _, msg := range a.sent {
		bytes += uint64(len(msg)) + 1
	}
	byType := tr.perType()
	if len(byType) != 2 || byType[1] != (typeTraffic{TypeTelemetry, uint64(len(a.sent)), bytes}) {
		t.Errorf("telemetry traffic %+v, sent %d packages %d bytes", byType, len(a.sent), bytes)
	}
	probe := protocol.TimeSync{Type: protocol.TypeTimeDelay, Dest: rootID, From: nodeA, Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: 1}}
	if byType[0].Type != protocol.TypeTimeDelay || byType[0].Packages != uint64(len(a.probes)) ||
		byType[0].Bytes < uint64(len(a.probes)*(len(probe.AppendJSON(nil))+1)) {
		t.Errorf("probe traffic %+v for %d probes", byType[0], len(a.probes))
	}
	if tr.Packages != byType[0].Packages+byType[1].Packages || tr.Bytes != byType[0].Bytes+byType[1].Bytes {
		t.Errorf("traffic totals %+v", tr)
	}
}

func TestReporterPriorityFrameOnNewAlert(t *testing.T) {
	m := newFakeMesh(t)
	sink := &rootSink{dec: telemetry.NewDecoder()}
	m.add(rootID, true, sink)
	mem := &memory{free: 48_000}
	r := NewReporter(ReporterConfig{Interval: 30 * time.Second, Providers: reporterProviders(mem)}, m.now)
	m.add(nodeA, false, r)
	m.link(rootID, nodeA)
	m.run(epoch.Add(10 * time.Second)) // first frame at 0 s
	mem.free = 4000                    // below 10 KB: LOW_MEMORY
	m.run(epoch.Add(12 * time.Second))
	if len(sink.frames) != 2 {
		t.Fatalf("%d frames", len(sink.frames))
	}
	f := sink.frames[1]
	if !f.Priority || AlertFlags(f.Values.Alerts)&FlagLowMemory == 0 || f.Values.FreeMemory != 4000 {
		t.Fatalf("priority frame %+v", f)
	}
	if at := sink.times[1].Sub(epoch); at != 11*time.Second {
		t.Errorf("priority frame at %v, want at the first check after the change (11 s)", at)
	}
	// It was queued ahead of normal traffic; the regular frame was not.
	a := m.nodes[nodeA]
	if len(a.high) != 1 || string(a.high[0]) != string(a.sent[len(a.sent)-1]) {
		t.Errorf("%d high-priority sends", len(a.high))
	}
	// The bit stays set: no further priority frames, the next regular
	// one at 30 s.
	m.run(epoch.Add(36 * time.Second))
	if len(sink.frames) != 3 || sink.frames[2].Priority || sink.times[2].Sub(epoch) != 30*time.Second {
		t.Fatalf("frames after the alert: %d", len(sink.frames))
	}
	// A new bit within the priority gap waits for the gap to end.
	mem.free = 48_000
	m.run(epoch.Add(40 * time.Second))
	r.Notify(m.now) // nothing new: no frame
	r.cfg.Providers.Alerts = func(time.Time) AlertFlags { return FlagSensorError }
	r.Notify(m.now)
	m.flush()
	if n := len(sink.frames); n != 4 || !sink.frames[3].Priority {
		t.Fatalf("Notify with a new bit: %d frames", n)
	}
	r.cfg.Providers.Alerts = func(time.Time) AlertFlags { return FlagSensorError | FlagOTAFailed }
	r.Notify(m.now)
	m.flush()
	if len(sink.frames) != 4 {
		t.Fatal("second priority frame inside the gap")
	}
	m.run(epoch.Add(43 * time.Second))
	if len(sink.frames) != 5 || sink.times[4].Sub(epoch) != 42*time.Second {
		t.Fatalf("deferred priority frame: %d frames, last at %v", len(sink.frames), sink.times[len(sink.times)-1].Sub(epoch))
	}
}

func TestReporterAnswersQueries(t *testing.T) {
	m := newFakeMesh(t)
	root := m.add(rootID, true)
	r := NewReporter(ReporterConfig{Interval: -1, Providers: reporterProviders(&memory{free: 20_000})}, m.now)
	a := m.add(nodeA, false, r)
	m.link(rootID, nodeA)
	m.runFor(10 * time.Second)
	if len(a.sent) != 0 {
		t.Fatalf("stream disabled, yet %d packages sent", len(a.sent))
	}

	q := StatusQuery{From: rootID, Dest: nodeA, ID: 7, Form: FormFull}
	m.inject(nodeA, string(q.AppendJSON(nil)))
	reps := sentOfType[*StatusReport](t, a, TypeStatusReport)
	if len(reps) != 1 || reps[0].QueryID != 7 || reps[0].Dest != rootID || reps[0].From != nodeA {
		t.Fatalf("reports %+v", reps)
	}
	got := reps[0].Metrics
	if got.Uptime != 10 || got.FreeMemory != 20_000 || got.FirmwareVersion != "2.1.0" || got.ReportInterval != 0 {
		t.Errorf("report metrics %+v", got)
	}

	// A broadcast for other nodes is ignored; one for all is answered.
	q = StatusQuery{From: rootID, ID: 8, Targets: []uint32{nodeB}}
	m.inject(nodeA, string(q.AppendJSON(nil)))
	q = StatusQuery{From: rootID, ID: 9, Form: FormEnhanced}
	m.inject(nodeA, string(q.AppendJSON(nil)))
	var enhanced [][]byte
	for _, msg := range a.sent {
		if h, _ := protocol.ParseHeader(msg); h.Type == protocol.TypeEnhancedStatus {
			enhanced = append(enhanced, msg)
		}
	}
	if len(enhanced) != 1 || len(sentOfType[*StatusReport](t, a, TypeStatusReport)) != 1 {
		t.Fatalf("answers: %d enhanced, sent %q", len(enhanced), a.sent)
	}
	if !strings.HasPrefix(string(enhanced[0]), `{"from":2001,"dest":1000,"routing":1,"type":604,"status":0,"uptime":10,"mem":19,`) {
		t.Errorf("enhanced answer %s", enhanced[0])
	}
	p, err := protocol.Decode(enhanced[0])
	if err != nil {
		t.Fatal(err)
	}
	es := p.(*protocol.EnhancedStatus)
	if es.Firmware != "2.1.0" || es.FirmwareMD5 != "0123456789abcdef0123456789abcdef" || es.FreeMemoryKB != 19 {
		t.Errorf("enhanced status %+v", es)
	}
	var got604 int
	for _, ev := range eventsOf[mesh.PackageReceived](root) {
		if ev.Header.Type == protocol.TypeEnhancedStatus && ev.Header.Dest == rootID {
			got604++
		}
	}
	if got604 != 1 {
		t.Errorf("root received %d addressed 604s, want 1", got604)
	}
}

func TestReporterSpreadsBroadcastAnswers(t *testing.T) {
	m := newFakeMesh(t)
	m.add(rootID, true)
	var hosts []*fakeHost
	for i := uint32(0); i < 20; i++ {
		r := NewReporter(ReporterConfig{Interval: -1}, m.now)
		hosts = append(hosts, m.add(3000+i, false, r))
		m.link(rootID, 3000+i)
	}
	q := StatusQuery{From: rootID, ID: 42, Spread: 2 * time.Second}
	start := m.now
	for _, h := range hosts {
		m.inject(h.id, string(q.AppendJSON(nil)))
	}
	distinct := map[time.Duration]bool{}
	slices.SortFunc(hosts, func(a, b *fakeHost) int {
		return cmp.Compare(spreadDelay(a.id, 42, 2*time.Second), spreadDelay(b.id, 42, 2*time.Second))
	})
	for i, h := range hosts {
		want := spreadDelay(h.id, 42, 2*time.Second)
		if want < 0 || want >= 2*time.Second {
			t.Fatalf("delay %v outside the spread", want)
		}
		distinct[want] = true
		m.run(start.Add(want).Add(-time.Nanosecond))
		if len(h.sent) != 0 && want > 0 {
			t.Fatalf("node %d answered before its delay %v", i, want)
		}
	}
	m.run(start.Add(2 * time.Second))
	for i, h := range hosts {
		if n := len(sentOfType[*StatusReport](t, h, TypeStatusReport)); n != 1 {
			t.Fatalf("node %d sent %d reports", i, n)
		}
	}
	if len(distinct) < 15 {
		t.Errorf("only %d distinct delays among 20 nodes", len(distinct))
	}
}

func TestReporterKeyframeRequestAndCollectorDiscovery(t *testing.T) {
	m := newFakeMesh(t)
	sink := &rootSink{dec: telemetry.NewDecoder()}
	m.add(rootID, false, sink) // not root: the collector is learnt from a query
	r := NewReporter(ReporterConfig{Interval: 30 * time.Second, Telemetry: telemetry.EncoderConfig{KeyframeEvery: 100}}, m.now)
	a := m.add(nodeA, false, r)
	m.link(rootID, nodeA)
	m.runFor(40 * time.Second)
	if len(a.sent) != 0 || r.Collector() != 0 {
		t.Fatalf("no root in the layout, yet frames went to %d", r.Collector())
	}
	q := StatusQuery{From: rootID, Dest: nodeA, ID: 1}
	m.inject(nodeA, string(q.AppendJSON(nil)))
	if r.Collector() != rootID {
		t.Fatalf("collector %d, want the querier", r.Collector())
	}
	m.runFor(31 * time.Second)
	n := len(sink.frames)
	if n == 0 {
		t.Fatal("no frames after the collector became known")
	}
	c := TelemetryControl{From: rootID, Dest: nodeA, Keyframe: true}
	m.inject(nodeA, string(c.AppendJSON(nil)))
	if len(sink.frames) != n+1 || !sink.frames[n].Keyframe {
		t.Fatalf("keyframe request: %d frames, last keyframe %v", len(sink.frames), sink.frames[len(sink.frames)-1].Keyframe)
	}
}

func TestReporterConnectionLost(t *testing.T) {
	m := newFakeMesh(t)
	sink := &rootSink{dec: telemetry.NewDecoder()}
	m.add(rootID, true, sink)
	r := NewReporter(ReporterConfig{Interval: 10 * time.Second, Collector: rootID}, m.now)
	a := m.add(nodeA, false, r)
	m.runFor(20 * time.Second) // not linked: frames fail
	if tr := r.Traffic(); tr.Failed == 0 || tr.Packages != 0 {
		t.Fatalf("traffic before linking %+v", tr)
	}
	if got := r.Snapshot(m.now).Alerts; !got.Has(FlagConnectionLost) {
		t.Fatalf("alerts %v, want CONNECTION_LOST", got)
	}
	m.runFor(time.Second)
	m.link(rootID, nodeA) // the frame goes out at once, as a keyframe
	m.run(m.now)
	if len(sink.frames) != 1 || !sink.frames[0].Keyframe || AlertFlags(sink.frames[0].Values.Alerts).Has(FlagConnectionLost) {
		t.Fatalf("frames after linking %+v", sink.frames)
	}
	_ = a
	for _, err := range sink.errs {
		if !errors.Is(err, telemetry.ErrKeyframeMismatch) {
			t.Error(err)
		}
	}
}

func TestReporterEnhancedBroadcast(t *testing.T) {
	m := newFakeMesh(t)
	root := m.add(rootID, true)
	r := NewReporter(ReporterConfig{Interval: -1, EnhancedInterval: 20 * time.Second}, m.now)
	m.add(nodeA, false, r)
	m.link(rootID, nodeA)
	m.runFor(45 * time.Second)
	got := eventsOf[mesh.PackageReceived](root)
	if len(got) != 2 || got[0].Header.Type != protocol.TypeEnhancedStatus || got[0].Header.Routing != protocol.RouteBroadcast {
		t.Fatalf("stock broadcasts %+v", got)
	}
}
