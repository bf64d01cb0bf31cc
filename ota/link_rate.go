package ota

import (
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// linkRate follows the links a push crosses, with the airtime model as
// the starting point: both pushes (stock-turbo's parts and the broadcast
// mode's chunks) go at speed times the rate the model gives them (the
// busiest radio sending each once per child).
//
// The signal that the mesh keeps up is a TIME_DELAY exchange with the
// deepest node, which every painlessMesh node answers (docs/protocol.md
// §5): it travels at the Data's priority through the same relays' queues
// to the far end of the tree and back, so its trip time is the path's
// queueing plus transmission, relays we cannot see included (our own
// outgoing queue would show the first hop only: a gateway's TCP link to a
// radio mesh drains at once while the radios behind it fill). The trip
// time excludes the responder's processing (TripDelay).
//
//   - Increase: a probe's round trip is shorter than half of what the
//     model gives the probe itself (its airtime on every hop there and
//     back, with nothing queued), and no loss showed since the last probe.
//     The path moved the probe faster than the model's radios could even
//     when idle, so the links are faster than the model and not queueing:
//     the rate doubles (up to linkMaxSpeed).
//   - Decrease: a loss signal (stock-turbo: a receiver seen stuck, a
//     go-back, a drop out asking for a part; broadcast: the receivers'
//     Reports showing loss above the target), a probe unanswered in time
//     (an overflowing queue drops what does not fit), or a round trip
//     grown to several times the shortest one seen (queues fill) halves
//     the rate, never below the model's.
//
// On the ESP8266 model no round trip beats the model's airtime, so the
// rate stays the model's there; on TCP links (a loopback test, a
// gateway's direct links) it rises within a few round trips.
type linkRate struct {
	speed float64 // push rate as a multiple of the model's; 0: 1
	// probeTo and probeAt are the outstanding probe (zero: none);
	// nextProbe is when the next may go.
	probeTo   uint32
	probeAt   time.Time
	nextProbe time.Time
	model     time.Duration // the outstanding probe's round trip on the model
	minTrip   time.Duration // shortest probe round trip seen
	idleGap   time.Duration // the probes' gap while they back off
	lost      bool          // a loss signal since the last adjustment
	rises     int           // adjustments that raised the rate
	falls     int           // adjustments that lowered the rate
}

// Rate control tuning.
const (
	// linkMaxSpeed bounds the rate: 256 times the model's is a 4 KiB
	// part to five children every millisecond, more than loopback TCP to
	// the C++ receivers takes without queueing.
	linkMaxSpeed = 256
	// linkMinProbeGap and linkMaxProbeGap bound the time between probes: often enough to
	// ramp up within a fraction of a second on a fast link, rare enough
	// to cost a radio mesh nothing (a probe is about 150 bytes).
	linkMinProbeGap = 5 * time.Millisecond
	linkMaxProbeGap = time.Second
	// linkIdleProbeGap bounds the back-off of the probes at the model's
	// rate on links no faster than the model.
	linkIdleProbeGap = 10 * time.Second
	// linkProbeTimeout is how long a probe may go unanswered before it
	// counts as lost.
	linkProbeTimeout = 3 * time.Second
	// linkQueueTrips: a round trip this many times the shortest means
	// the queues on the path grow.
	linkQueueTrips = 4
	// linkProbeLen is about the encoded size of a TIME_DELAY.
	linkProbeLen = 100
)

// factor is the push rate as a multiple of the model's.
func (r *linkRate) factor() float64 {
	return max(r.speed, 1)
}

// cost is the radio time a message of n bytes sent count times costs on
// links as fast as the probes showed them: what the pacer is charged.
func (r *linkRate) cost(radio Radio, n, count int) time.Duration {
	return time.Duration(float64(time.Duration(count)*radio.airtime(n)) / r.factor())
}

// loss records a loss signal; the rate falls at the next adjustment.
func (r *linkRate) loss() {
	r.lost = true
}

// probe sends a TIME_DELAY to node to when one is due, and counts an
// unanswered one as lost; model is its round trip on the airtime model.
func (r *linkRate) probe(now time.Time, h mesh.Host, to uint32, model time.Duration) {
	if !r.probeAt.IsZero() {
		if now.Sub(r.probeAt) < linkProbeTimeout {
			return
		}
		r.lost = true
		r.adjust(now, 0)
	}
	if now.Before(r.nextProbe) {
		return
	}
	if to == 0 || !h.StartDelayMeasurement(now, to) {
		// Nobody to probe (the layout is empty, the node unreachable):
		// try again later, or a due time left in the past would wake the
		// driver again and again.
		r.nextProbe = now.Add(linkMaxProbeGap)
		return
	}
	r.probeTo, r.probeAt, r.model = to, now, model
}

// measured takes a DelayMeasured answer; true if it was our probe's.
func (r *linkRate) measured(now time.Time, ev mesh.DelayMeasured) bool {
	if r.probeAt.IsZero() || ev.NodeID != r.probeTo {
		return false
	}
	trip := 2 * time.Duration(max(ev.Delay, 0)) * time.Microsecond
	if wall := now.Sub(r.probeAt); trip > wall {
		trip = wall // a clock step at the far end: our own clock bounds it
	}
	r.adjust(now, trip)
	return true
}

// adjust applies a probe's outcome (trip 0: lost) and schedules the next.
func (r *linkRate) adjust(now time.Time, trip time.Duration) {
	r.probeAt = time.Time{}
	old := r.factor()
	switch {
	case r.lost || trip == 0 || r.minTrip > 0 && trip > linkQueueTrips*r.minTrip && trip > r.model/2:
		r.speed = max(old/2, 1)
	case trip < r.model/2:
		r.speed = min(old*2, linkMaxSpeed)
	}
	if trip > 0 && (r.minTrip == 0 || trip < r.minTrip) {
		r.minTrip = trip
	}
	switch f := r.factor(); {
	case f > old:
		r.rises++
	case f < old:
		r.falls++
	}
	r.lost = false
	gap := min(max(2*trip, linkMinProbeGap), linkMaxProbeGap)
	if r.factor() == 1 && (trip == 0 || trip >= r.model/2) {
		// At the model's rate on links no faster than the model the
		// probes only watch for a change: they back off.
		r.idleGap = min(max(2*r.idleGap, gap), linkIdleProbeGap)
		gap = r.idleGap
	} else {
		r.idleGap = 0
	}
	r.nextProbe = now.Add(gap)
}

// due is when the rate next needs a Tick: a probe due, or the
// outstanding one timing out (zero: at once).
func (r *linkRate) due() time.Time {
	if !r.probeAt.IsZero() {
		return r.probeAt.Add(linkProbeTimeout)
	}
	return r.nextProbe
}

// probing says whether c's stream probes the links: while a pass runs,
// from its first push.
func (t *turboControl) probing() bool {
	return t.on && t.pass.running && t.lastLen > 0
}

// probeDue is when c's stream next probes (zero: not probing).
func (t *turboControl) probeDue() time.Time {
	if !t.probing() {
		return time.Time{}
	}
	return t.rate.due()
}

// probing says whether c's broadcast push probes the links: while it
// pushes, from its first chunk.
func (p *pushControl) probing() bool {
	return p.pushing && p.lastLen > 0
}

// probeDue is when c's broadcast push next probes (zero: not probing).
func (p *pushControl) probeDue() time.Time {
	if !p.probing() {
		return time.Time{}
	}
	return p.link.due()
}

// probeLinks sends r's probe when due and probing, between pushes too: a
// long model gap must not hold back the probes that would shorten it. It
// reports whether a probe went.
func (d *Distributor) probeLinks(now time.Time, r *linkRate, probing bool) bool {
	if !probing || now.Before(r.due()) {
		return false
	}
	_, _, depth := d.fanout()
	to := deepest(depth)
	r.probe(now, d.host, to, time.Duration(2*depth[to])*d.cfg.Radio.airtime(linkProbeLen))
	return r.probeAt.Equal(now)
}

// deepest is the node farthest from us in depth (the lowest id among
// equals, for determinism): the probe's target. Zero: none.
func deepest(depth map[uint32]int) uint32 {
	var id uint32
	best := 0
	for n, d := range depth {
		if d > best || d == best && n < id {
			id, best = n, d
		}
	}
	return id
}

// linkDelay hands a DelayMeasured to the pushes probing that node, and
// lets a push that a faster rate makes due go sooner.
func (d *Distributor) linkDelay(now time.Time, ev mesh.DelayMeasured) {
	for _, c := range d.campaigns {
		if c.State != CampaignRunning {
			continue
		}
		if t := &c.turbo; t.on {
			d.measured(now, ev, &t.rate, &t.nextAt)
		}
		if p := &c.push; p.pushing {
			d.measured(now, ev, &p.link, &p.nextAt)
		}
	}
}

// measured feeds ev to r; if the rate rose, the wait left until nextAt,
// and the pacer's charge for the last push, shrink as the rate grew.
func (d *Distributor) measured(now time.Time, ev mesh.DelayMeasured, r *linkRate, nextAt *time.Time) {
	old := r.factor()
	if !r.measured(now, ev) {
		return
	}
	if f := r.factor(); f > old && nextAt.After(now) {
		*nextAt = now.Add(time.Duration(float64(nextAt.Sub(now)) * old / f))
		if left := d.pace.free.Sub(now); left > 0 {
			d.pace.refund(now, left-time.Duration(float64(left)*old/f))
		}
	}
}
