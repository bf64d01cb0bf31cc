package status

import "time"

// ChangeSteps say how far a value must move before change-driven
// reporting (ReporterConfig.MaxInterval) sends it at once. They are the
// resolution at which the collector follows a node between regular
// frames: a value that moved less waits for the next regular frame.
// Nodes, connections, alert bits, device status, OTA state and firmware
// count on any change. Uptime, the message counters and throughput
// change all the time and never trigger a frame: they travel with the
// regular frames. Zero fields take the defaults.
type ChangeSteps struct {
	FreeMemory   uint32 // bytes (default 512)
	LatencyUs    uint32 // µs (default 100 ms: a fifth of the HIGH_LATENCY threshold)
	LossPermille uint16 // ‰ (default 50: half the PACKET_LOSS threshold)
	RSSI         uint8  // dB (default 5)
	OTAProgress  uint8  // percent (default 5)
}

// DefaultChangeSteps are the steps zero ChangeSteps fields take.
var DefaultChangeSteps = ChangeSteps{FreeMemory: 512, LatencyUs: 100_000, LossPermille: 50, RSSI: 5, OTAProgress: 5}

func (s ChangeSteps) withDefaults() ChangeSteps {
	d := DefaultChangeSteps
	if s.FreeMemory == 0 {
		s.FreeMemory = d.FreeMemory
	}
	if s.LatencyUs == 0 {
		s.LatencyUs = d.LatencyUs
	}
	if s.LossPermille == 0 {
		s.LossPermille = d.LossPermille
	}
	if s.RSSI == 0 {
		s.RSSI = d.RSSI
	}
	if s.OTAProgress == 0 {
		s.OTAProgress = d.OTAProgress
	}
	return s
}

// Changed reports whether now differs from was by at least one step in a
// stepped value, or at all in a value that counts on any change.
func (s ChangeSteps) Changed(was, now *Metrics) bool {
	s = s.withDefaults()
	return was.Nodes != now.Nodes || was.Connections != now.Connections ||
		was.Alerts != now.Alerts || was.DeviceStatus != now.DeviceStatus ||
		was.OTAState != now.OTAState || was.FirmwareHash != now.FirmwareHash ||
		apart(uint64(was.FreeMemory), uint64(now.FreeMemory), uint64(s.FreeMemory)) ||
		apart(uint64(was.LatencyUs), uint64(now.LatencyUs), uint64(s.LatencyUs)) ||
		apart(uint64(was.LossPermille), uint64(now.LossPermille), uint64(s.LossPermille)) ||
		apart(uint64(int16(was.RSSI)+128), uint64(int16(now.RSSI)+128), uint64(s.RSSI)) ||
		apart(uint64(was.OTAProgress), uint64(now.OTAProgress), uint64(s.OTAProgress))
}

// apart reports whether a and b are at least step apart.
func apart(a, b, step uint64) bool {
	if a > b {
		a, b = b, a
	}
	return b-a >= step
}

// current is the node's metrics at now as a frame would carry them,
// without moving the loss and throughput window.
func (r *Reporter) current(now time.Time) Metrics {
	m := r.measure(now, r.host.Stats())
	m.Alerts |= r.cfg.Thresholds.flags(&m)
	return m
}

// adapt sets the interval that the frame about to go out at now states.
// After a change (early is a frame sent for one) the next frame follows
// at Interval, to confirm it (the alert rules clear on two good samples),
// and the one after at a quarter of the interval the change interrupted
// (whole seconds, at least Interval); a regular frame without a change
// doubles the interval up to MaxInterval. A value that keeps changing
// keeps the node at Interval; one change costs about three frames more
// than none, not the five of doubling again from Interval. An early frame
// also moves the next regular frame to the interval it states.
func (r *Reporter) adapt(now time.Time, early bool) {
	if r.cfg.MaxInterval == 0 {
		return
	}
	if !r.haveSent {
		r.every = r.cfg.Interval
		return
	}
	changed := early
	if !early {
		m := r.current(now)
		changed = r.cfg.Steps.Changed(&r.sent, &m)
	}
	switch {
	case changed:
		if r.resume == 0 {
			r.resume = max(r.cfg.Interval, (r.every / 4).Truncate(time.Second))
		}
		r.every = r.cfg.Interval
		if early {
			// A regular frame's successor is scheduled by Tick.
			r.nextFrame = now.Add(r.every)
		}
	case r.resume != 0:
		r.every, r.resume = r.resume, 0
	default:
		r.every = min(2*r.every, r.cfg.MaxInterval)
	}
}

// checkChange sends a frame at once, flagged priority, when a value moved
// by its step since the last frame (change-driven reporting only), at
// most one per half Interval.
func (r *Reporter) checkChange(now time.Time) {
	if r.cfg.MaxInterval == 0 || !r.haveSent || r.unreachable || now.Sub(r.sentAt) < r.cfg.Interval/2 {
		return
	}
	m := r.current(now)
	if r.cfg.Steps.Changed(&r.sent, &m) {
		r.sendFrame(now, true)
	}
}
