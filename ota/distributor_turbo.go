package ota

import (
	"encoding/base64"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// turboControl is a stock-turbo campaign's sending (README, OTA modes):
// stock receivers served with one flood per chunk, using only what the
// stock receiver already does (docs/protocol.md §8.4–8.5):
//
//   - The Announce says broadcasted:true, so receivers that see every
//     chunk in order write them and send nothing.
//   - The main stream pushes chunk 0..N-1 in order as BROADCAST Data with
//     broadcasted:true, spaced for the busiest radio.
//   - A receiver that misses a chunk drops out of broadcast mode on the
//     next one and requests the chunk it lacks; from then on it requests
//     every next chunk. The request's from is the Data's dest (ours), so a
//     request names a chunk, never a node: laggards are counted per chunk.
//   - Catch-up: a requested chunk the mesh has not seen lately is pushed
//     again as BROADCAST Data, with the few chunks after it, so everyone
//     at the same place moves together. While the main stream runs it
//     says broadcasted:false, so receivers in step with the main stream
//     ignore it instead of dropping out; once it is over, broadcasted:true,
//     so a receiver still silent in broadcast mode at another chunk drops
//     out and asks.
//   - Loss among requesting receivers shows as a deficit: fewer requests
//     for chunk k+1 than for chunk k a round trip after k went out.
//   - Once the main stream is over and no catch-up is due, the last chunk
//     is pushed again with broadcasted:true (a probe): a receiver still in
//     broadcast mode that lost the tail drops out and asks; one waiting
//     for the last chunk completes. Probes nobody answers back off to one
//     a minute.
//
// Every Data carries the campaign's md5, and a campaign has one image, so
// a receiver never writes a chunk of another image.
type turboControl struct {
	on     bool
	next   int       // the main stream's next chunk
	nextAt time.Time // when the next push (any stream) may go
	over   bool      // the main stream is through
	// lastPush is when each chunk last went out (either stream).
	lastPush []time.Time
	// asked counts requests for a chunk since its last check; got counts
	// requests for the chunk after it since it was last pushed (proof
	// that a requester received it).
	asked, got []int
	// asks counts every request for a chunk, from the start: a requester
	// adds one to each chunk it asks for on its way, so more asks for k
	// than for k+1 point at requesters stuck at k (or at lost requests
	// and retries: a push too many, not a node left behind).
	asks     []int
	checks   []turboCheck // pushed chunks whose deficit is due, in time order
	checkDue []time.Time  // each chunk's latest check (earlier ones in checks are void)
	catchUp  []bool       // chunks waiting to be pushed again
	pending  int          // how many catchUp entries are set
	// rtt estimates the request round trip (a push of chunk k to a
	// request for k+1 after it); the deficit check waits srtt + 4 rttvar.
	rtt       rttEstimate
	lastHeard time.Time // the last request
	lastSent  time.Time // the last push
	probeGap  time.Duration
	turn      bool // whose turn the next push is when both streams have one: catch-up's
	// rate scales the push rate the airtime model allows (1): AIMD on
	// the share of pushes that had to be repeated, so the model is only
	// the starting point and the mesh's loss sets the pace.
	rate float64
	// Per control window: pushes, requests heard (requests load the
	// relays' radios upstream), and of the requesters a check covered,
	// how many lost the chunk.
	window           time.Time
	pushes, requests int
	checked, lost    int
	requestsPerPush  float64
}

type turboCheck struct {
	part int
	at   time.Time
}

// Turbo tuning.
const (
	// turboWindow is how many chunks a catch-up pushes ahead of the chunk
	// asked for: requesting receivers ask one chunk per round trip, the
	// window lets them move at the push rate instead.
	turboWindow = 8
	// turboMinWait and turboMaxWait bound the deficit check's wait (twice
	// the longest round trip seen; the initial estimate before any
	// request came back is turboMaxWait/2).
	turboMinWait = 200 * time.Millisecond
	turboMaxWait = 10 * time.Second
	// turboInitialRTT is the round trip assumed before one was measured:
	// a few hops of an ESP8266 mesh at 1 KB chunks.
	turboInitialRTT = time.Second
	// turboMaxProbeGap bounds the backoff of probes nobody answers.
	turboMaxProbeGap = time.Minute
)

func newTurboControl(chunks int, now time.Time, delay time.Duration) turboControl {
	return turboControl{
		on: true, nextAt: now.Add(delay),
		lastPush: make([]time.Time, chunks), asked: make([]int, chunks), got: make([]int, chunks), asks: make([]int, chunks), checkDue: make([]time.Time, chunks),
		catchUp: make([]bool, chunks), rtt: rttEstimate{srtt: turboInitialRTT, rttvar: turboInitialRTT / 2},
		rate: 1,
	}
}

func (t *turboControl) release() {
	*t = turboControl{}
}

// wait is how long after a push the requests it causes have arrived.
func (t *turboControl) wait() time.Duration {
	return min(max(t.rtt.srtt+4*t.rtt.rttvar, turboMinWait), turboMaxWait)
}

// want queues chunk k (someone lacks it) and the window after it for a
// catch-up push, skipping window chunks that went out within a round trip
// (in flight) and chunks the main stream has yet to push.
func (t *turboControl) want(now time.Time, k int) {
	for i := k; i < min(k+turboWindow, len(t.catchUp)); i++ {
		if !t.over && i >= t.next {
			return
		}
		inFlight := i > k && !t.lastPush[i].IsZero() && now.Sub(t.lastPush[i]) < t.wait()
		if t.catchUp[i] || inFlight {
			continue
		}
		t.catchUp[i] = true
		t.pending++

	}
}

// request counts a stock DataRequest for chunk k.
func (t *turboControl) request(now time.Time, k int) {
	t.lastHeard = now
	if k > 0 && !t.lastPush[k-1].IsZero() {
		t.got[k-1]++
		if rtt := now.Sub(t.lastPush[k-1]); rtt < turboMaxWait {
			t.rtt.sample(rtt)
		}
	}
	t.asked[k]++
	t.asks[k]++
	t.requests++
	if !t.over && k >= t.next {
		return // the main stream brings it
	}
	if t.lastPush[k].IsZero() || now.Sub(t.lastPush[k]) >= t.wait() {
		// Not in flight: the requester lost it, came late, or restarted.
		t.want(now, k)
		return
	}
	// In flight to the requester: the ones after it will be needed too.
	if k+1 < len(t.catchUp) && !t.catchUp[k+1] && now.Sub(t.lastPush[k+1]) >= t.wait() {
		t.want(now, k+1)
	}
}

// due runs the deficit checks whose time came: more requests for chunk k
// than for k+1 since k went out means requesters lost k.
func (t *turboControl) due(now time.Time) {
	for len(t.checks) > 0 && !now.Before(t.checks[0].at) {
		k, at := t.checks[0].part, t.checks[0].at
		t.checks = t.checks[1:]
		if !at.Equal(t.checkDue[k]) {
			continue // pushed again since: its check comes later
		}
		t.checkDue[k] = time.Time{}
		// Nobody asks for anything after the last chunk: probes cover it.
		if k < len(t.asked)-1 {
			t.checked += t.asked[k]
			t.lost += max(t.asked[k]-t.got[k], 0)
		}
		if t.asked[k] > t.got[k] && k < len(t.asked)-1 {
			t.want(now, k)
		}
		t.asked[k], t.got[k] = 0, 0
	}
}

// stuck returns the lowest chunk more requesters asked for than for the
// chunk after it, or -1.
func (t *turboControl) stuck() int {
	for k := 0; k+1 < len(t.asks); k++ {
		if t.asks[k] > t.asks[k+1] {
			return k
		}
	}
	return -1
}

// pick returns the chunk to push now and whether it is a catch-up.
// Catch-up and the main stream take turns: laggards catch up at half the
// rate while the nodes in step keep moving (letting catch-up pre-empt the
// main stream made the nodes near the root, which stock unicast serves
// first, finish later).
func (t *turboControl) pick() (part int, catchUp, ok bool) {
	t.turn = !t.turn
	if t.pending > 0 && (t.over || t.turn) {
		for i, w := range t.catchUp {
			if w {
				return i, true, true
			}
		}
	}
	if !t.over {
		return t.next, false, true
	}
	return 0, false, false
}

// turbo sends a stock-turbo campaign's next push when its time came.
func (d *Distributor) turbo(now time.Time, c *dcampaign) {
	t := &c.turbo
	if !t.on {
		return
	}
	t.due(now)
	if now.Before(t.nextAt) || !d.pace.ready(now) {
		return
	}
	own, busiest, _ := d.fanout()
	if own == 0 {
		t.nextAt = now.Add(time.Second) // nobody to push to yet
		return
	}
	part, catchUp, ok := t.pick()
	probe := false
	if !ok {
		if t.probeGap == 0 {
			t.probeGap = t.wait()
		}
		if now.Before(t.lastSent.Add(t.probeGap)) {
			return
		}
		if k := t.stuck(); k >= 0 {
			// The mesh went quiet with a requester stuck at k: a
			// request-mode stock receiver ignores the probe and would
			// wait 30 s to ask again.
			t.asks[k] = t.asks[k+1]
			t.want(now, k)
			part, catchUp, ok = t.pick()
		}
	}
	if !ok {
		if t.lastHeard.Before(t.lastSent) {
			t.probeGap = min(2*t.probeGap, turboMaxProbeGap) // nobody answered the last push
		} else {
			t.probeGap = t.wait()
		}
		part, probe = len(t.lastPush)-1, true
	}
	n := d.turboSend(now, c, part, !catchUp || t.over)
	d.pace.busy(now, n, own)
	if catchUp {
		t.catchUp[part] = false
		t.pending--
	} else if !probe {
		t.next++
		t.over = t.next >= len(t.lastPush)
	}
	t.lastPush[part], t.lastSent = now, now
	if t.checkDue[part].IsZero() {
		t.got[part] = 0 // counts from this push; else from the push the pending check follows
	}
	t.checkDue[part] = now.Add(t.wait())
	t.checks = append(t.checks, turboCheck{part: part, at: t.checkDue[part]})
	t.pushes++
	t.control(now)
	// The busiest radio sends the chunk once per child, and the relays
	// carry the requests it causes up to us (charged as if all crossed one
	// radio: conservative).
	per := time.Duration(busiest)*d.cfg.Radio.airtime(n) + time.Duration(t.requestsPerPush*float64(d.cfg.Radio.airtime(turboRequestLen)))
	t.nextAt = now.Add(time.Duration(float64(per) / (d.cfg.Utilization * t.rate)))
}

// turboSend floods chunk i of c's stock variant as stock Data addressed
// to the distributor itself (the stock receiver ignores dest; its request
// names the Data's dest, so requests come back here).
func (d *Distributor) turboSend(now time.Time, c *dcampaign, i int, broadcasted bool) int {
	v := c.stock
	m := &stockMsg{Type: protocol.TypeOTAData, From: d.host.ID(), Routing: int(protocol.RouteBroadcast), MD5: c.Image.MD5,
		Hardware: c.Image.Hardware, Role: c.Image.Role, Forced: c.Forced, NoPart: uint32(v.chunks), Broadcasted: broadcasted,
		Dest: d.host.ID(), PartNo: uint32(i), Data: base64.StdEncoding.EncodeToString(v.chunk(i))}
	b := m.AppendJSON(nil)
	_ = d.host.SendRaw(now, b)
	d.stats.StockServed++
	if i == v.chunks-1 {
		c.turboLastSent(now, d.host.NodeList(false), v)
	}
	return len(b)
}

// turboRequestLen is about the encoded size of a stock DataRequest.
const turboRequestLen = 200

// turboLossTarget is the share of requesters losing a chunk above which
// the push slows down (multiplicative decrease); below it the rate creeps
// back up to the model's. Random loss of a few per cent per hop over a
// few hops stays below it; an overflowing radio queue does not.
const turboLossTarget = 0.15

// control closes a control window when it is due: AIMD on the share of
// requesters that lost a chunk, and the requests each push causes.
func (t *turboControl) control(now time.Time) {
	if t.window.IsZero() {
		t.window = now.Add(controlInterval)
		return
	}
	if now.Before(t.window) || t.pushes == 0 {
		return
	}
	t.requestsPerPush = float64(t.requests) / float64(t.pushes)
	if t.checked > 0 && float64(t.lost) > turboLossTarget*float64(t.checked) {
		t.rate = max(t.rate*0.75, 0.1)
	} else {
		t.rate = min(t.rate+0.05, 1)
	}
	t.pushes, t.requests, t.checked, t.lost = 0, 0, 0, 0
	t.window = now.Add(controlInterval)
}

// deadline is when the next push may go (zero: off).
func (t *turboControl) deadline() time.Time {
	switch {
	case !t.on:
		return time.Time{}
	case t.over && t.pending == 0:
		gap := t.probeGap
		if gap == 0 {
			gap = t.wait()
		}
		return later(t.nextAt, t.lastSent.Add(gap))
	}
	return t.nextAt
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkAt is when the next deficit check is due (zero: none).
func (t *turboControl) checkAt() time.Time {
	if len(t.checks) == 0 {
		return time.Time{}
	}
	return t.checks[0].at
}
