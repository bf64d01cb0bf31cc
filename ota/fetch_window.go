package ota

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// windowFetch is the pipelined strategy: a window of chunks asked of the
// distributor with Need (721), each asked again after a retransmission
// timeout from the measured round trip (RFC 6298 gains, Karn's rule for
// repeated asks).
type windowFetch struct {
	r *Receiver
	t *incoming

	askedUntil map[int]time.Time // chunk asked for → when to ask again
	askedAt    map[int]time.Time // chunk asked once → when (RTT sample)
	srtt, rttv time.Duration
}

func (f *windowFetch) begin(time.Time) {
	f.askedUntil = map[int]time.Time{}
	f.askedAt = map[int]time.Time{}
	if f.r.cfg.PeerToPeer {
		f.r.pickSources(f.t) // the nearest holders first (sources.go)
	}
}

// onRefuse asks the next source at once for what the last one refused.
func (f *windowFetch) onRefuse(now time.Time) {
	for i := range f.askedUntil {
		f.askedUntil[i] = now
	}
}

func (f *windowFetch) stored(i int)   { delete(f.askedUntil, i) }
func (f *windowFetch) childWaits(int) {} // every missing chunk is asked for anyway
func (f *windowFetch) discard()       {}

func (f *windowFetch) arrived(now time.Time, i int, _ bool) {
	if at, ok := f.askedAt[i]; ok {
		f.sampleRTT(now.Sub(at))
		delete(f.askedAt, i)
	}
}

func (f *windowFetch) sampleRTT(d time.Duration) {
	if f.srtt == 0 {
		f.srtt, f.rttv = d, d/2
		return
	}
	diff := f.srtt - d
	if diff < 0 {
		diff = -diff
	}
	f.rttv = (3*f.rttv + diff) / 4
	f.srtt = (7*f.srtt + d) / 8
}

func (f *windowFetch) rto() time.Duration {
	if f.srtt == 0 {
		return 5 * time.Second // no sample yet
	}
	d := f.srtt + 4*f.rttv
	return min(max(d, 500*time.Millisecond), 60*time.Second)
}

func (f *windowFetch) nextDeadline() time.Time {
	var next time.Time
	for _, d := range f.askedUntil {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if len(f.askedUntil) == 0 {
		next = f.t.lastChunk.Add(f.rto())
	}
	return next
}

func (f *windowFetch) tick(now time.Time) {
	r, t := f.r, f.t
	win := t.offer.Window
	if r.cfg.Window > 0 {
		win = r.cfg.Window
	}
	if win <= 0 {
		win = 8
	}
	var ask []int
	for _, i := range sortedKeys(f.askedUntil) {
		if !now.Before(f.askedUntil[i]) {
			ask = append(ask, i)
			delete(f.askedAt, i) // Karn: no RTT sample from a repeated ask
		}
	}
	if len(f.askedUntil) == 0 && len(ask) == 0 && now.Sub(t.lastChunk) >= f.rto() {
		t.lastChunk = now // nothing outstanding and nothing arriving: restart the window
	}
	for i := t.have.NextMissing(0); i >= 0 && len(f.askedUntil) < win; i = t.have.NextMissing(i + 1) {
		if _, ok := f.askedUntil[i]; ok {
			continue
		}
		ask = append(ask, i)
		f.askedUntil[i] = time.Time{}
		f.askedAt[i] = now
	}
	if len(ask) == 0 {
		return
	}
	slices.Sort(ask)
	rto := f.rto()
	for _, i := range ask {
		f.askedUntil[i] = now.Add(rto)
	}
	t.src.silent(now)
	if r.cfg.PeerToPeer {
		r.followParent(t)
	}
	if src := t.src.current(r.reachable); src != 0 {
		r.sendNeed(now, t, src, r.routeTo(src), ask)
		t.src.asked(now)
		return
	}
	r.sendNeed(now, t, t.dist, protocol.RouteSingle, ask)
}
