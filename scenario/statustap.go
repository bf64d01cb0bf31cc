package scenario

import (
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// The instruments of the status scenario: what every radio carries, what
// every reporter encodes, and what the root makes of it.

// meteredNode is a mesh.Node that counts the status traffic it hands to
// its radio and that its radio delivers. The simulator accepts any
// Machine, so the count needs no hook inside it.
type meteredNode struct {
	*mesh.Node
	tally *radioTally
}

// statusTraffic reports whether msg is status traffic, its size on the
// link, and whether it is a latency probe (TIME_DELAY).
func statusTraffic(msg []byte) (bool, uint64, bool) {
	h, err := protocol.ParseHeader(msg)
	if err != nil {
		return false, 0, false
	}
	probe := h.Type == protocol.TypeTimeDelay
	return status.IsStatusType(h.Type) || probe, uint64(len(msg)) + 1, probe
}

// Receive implements sim.Machine.
func (m *meteredNode) Receive(now time.Time, c mesh.ConnID, msg []byte) {
	if ok, n, probe := statusTraffic(msg); ok {
		m.tally.rxBytes += n
		if probe {
			m.tally.rxProbeBytes += n
		}
	}
	m.Node.Receive(now, c, msg)
}

// Ready implements sim.Machine.
func (m *meteredNode) Ready() mesh.Ready {
	rd := m.Node.Ready()
	for _, o := range rd.Messages {
		if ok, n, probe := statusTraffic(o.Data); ok {
			m.tally.txMsgs++
			m.tally.txBytes += n
			if probe {
				m.tally.txProbeBytes += n
			}
		}
	}
	return rd
}

// tappedReporter is a Reporter whose host records every telemetry frame it
// sends: the values the frame carries, decoded in order with nothing lost,
// and whether they agree with what the node's providers and counters said.
type tappedReporter struct {
	*status.Reporter
	tap  *tapHost
	sm   *scenarioMesh
	dev  *simDevice
	boot time.Time
	dec  *telemetry.Decoder
}

// Attach implements mesh.Plugin.
func (r *tappedReporter) Attach(h mesh.Host) {
	r.tap = &tapHost{Host: h, r: r}
	r.Reporter.Attach(r.tap)
}

type tapHost struct {
	mesh.Host
	r *tappedReporter
}

// tapBundler records the frames a reporter hands its aggregator.
type tapBundler struct {
	agg *status.Aggregator
	r   *tappedReporter
}

// Offer implements status.Bundler.
func (b *tapBundler) Offer(now time.Time, frame []byte) error {
	want := b.r.tap.external(now)
	if err := b.agg.Offer(now, frame); err != nil {
		return err
	}
	b.r.tap.record(now, b.r.tap.ID(), frame, want)
	return nil
}

// SendRawPriority keeps the reporter's priority path: the wrapper must not
// hide it from a host that has one.
func (h *tapHost) SendRawPriority(now time.Time, msg []byte, p mesh.Priority) error {
	return h.send(now, msg, func() error {
		if ps, ok := h.Host.(status.PrioritySender); ok {
			return ps.SendRawPriority(now, msg, p)
		}
		return h.Host.SendRaw(now, msg)
	})
}

// SendRaw implements mesh.Host.
func (h *tapHost) SendRaw(now time.Time, msg []byte) error {
	return h.send(now, msg, func() error { return h.Host.SendRaw(now, msg) })
}

func (h *tapHost) send(now time.Time, msg []byte, send func() error) error {
	hd, err := protocol.ParseHeader(msg)
	if err != nil || hd.Type != status.TypeTelemetry {
		return send()
	}
	// What the reporter read to build this frame, read again before the
	// send moves the counters.
	want := h.external(now)
	if err := send(); err != nil {
		return err
	}
	p, err := status.Decode(msg)
	tp, ok := p.(*status.TelemetryPackage)
	if err != nil || !ok {
		h.r.sm.badEncodings++
		return nil
	}
	h.record(now, tp.From, tp.Frame, want)
	return nil
}

// record notes one frame the node sent, checked against what its
// providers and counters said (want).
func (h *tapHost) record(now time.Time, from uint32, frame []byte, want telemetry.Values) {
	r, sm := h.r, h.r.sm
	f, err := r.dec.Decode(from, frame)
	if err != nil {
		sm.badEncodings++
		return
	}
	sm.framesOut++
	// Change-driven reporting states the interval it chose.
	if iv := time.Duration(f.Values.Interval) * time.Second; iv >= sm.cfg.Interval && iv <= sm.cfg.MaxInterval {
		want.Interval = f.Values.Interval
	}
	if !sameExternal(want, f.Values) {
		sm.badEncodings++
	}
	sm.sent[from].add(sentFrame{seq: f.Seq, at: now, values: f.Values})
}

// external is the part of a frame's values the node's providers and
// counters fix: everything but latency, loss, throughput and the flags.
func (h *tapHost) external(now time.Time) telemetry.Values {
	st := h.Stats()
	d := h.r.dev
	fw := status.FirmwareHash(d.firmware[0], d.firmware[1])
	return telemetry.Values{
		Uptime:          uint32(now.Sub(h.r.boot) / time.Second),
		FreeMemory:      d.free(now),
		MessagesRx:      uint32(st.MessagesRx),
		MessagesTx:      uint32(st.MessagesTx),
		MessagesDropped: uint32(st.MessagesDropped),
		Nodes:           uint16(len(h.NodeList(false))),
		Interval:        uint16(h.r.sm.cfg.Interval / time.Second),
		Connections:     uint8(st.Connections),
		RSSI:            d.rssi,
		WiFi:            status.WiFiPercent(d.rssi),
		FirmwareHash:    fw,
	}
}

// sameExternal compares the fields external sets.
func sameExternal(want, got telemetry.Values) bool {
	got.Latency, got.Throughput, got.LossPermille, got.Alerts = 0, 0, 0, 0
	got.DeviceStatus, got.OTAState, got.OTAProgress = 0, 0, 0
	return want == got
}

// frameCheck runs on the root after the Collector: for every telemetry
// frame the collector accepted, it compares the model's values with the
// ones the node encoded into that frame, and notes when the node measured
// them.
type frameCheck struct{ sm *scenarioMesh }

func (c *frameCheck) Attach(mesh.Host) {}
func (c *frameCheck) Types() []int {
	return []int{status.TypeTelemetry, status.TypeTelemetryBundle}
}
func (c *frameCheck) Tick(time.Time)              {}
func (c *frameCheck) NextDeadline() (t time.Time) { return t }

func (c *frameCheck) HandlePackage(now time.Time, _ mesh.ConnID, _ protocol.Header, raw []byte) {
	sm := c.sm
	frames := sm.collector.Stats().Frames
	accepted := frames > sm.rootFrames
	sm.rootFrames = frames
	if !accepted {
		return
	}
	p, err := status.Decode(raw)
	if err != nil {
		return
	}
	switch p := p.(type) {
	case *status.TelemetryPackage:
		c.check(now, p.From, p.Frame)
	case *status.TelemetryBundle:
		// The model holds each node's last frame of the bundle.
		last := map[uint32][]byte{}
		var order []uint32
		for _, e := range p.Entries {
			if _, seen := last[e.Node]; !seen {
				order = append(order, e.Node)
			}
			last[e.Node] = e.Frame
		}
		for _, id := range order {
			if st, ok := sm.collector.Model().Node(id); ok && st.LastSeen.Equal(now) {
				c.check(now, id, last[id])
			}
		}
		sm.superseded += uint64(len(p.Entries) - len(order))
	}
}

// check compares the model's values of node with the ones it encoded
// into frame, which the collector has just accepted.
func (c *frameCheck) check(now time.Time, node uint32, frame []byte) {
	sm := c.sm
	h, err := telemetry.ParseHeader(frame)
	sent := sm.sent[node]
	if err != nil || sent == nil {
		return
	}
	f, ok := sent.find(h.Seq)
	if !ok {
		return // a frame of an earlier start, still in flight
	}
	st, _ := sm.collector.Model().Node(node)
	sm.checked++
	if st.Metrics.Values() != f.values {
		sm.mismatched++
	}
	sm.dataAt[node] = f.at
	sm.frameDelayMax = max(sm.frameDelayMax, now.Sub(f.at))
	sm.frameAt[node] = append(sm.frameAt[node], rootFrame{at: now, interval: time.Duration(f.values.Interval) * time.Second})
}
