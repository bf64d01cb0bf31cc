package ota

import (
	"encoding/base64"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// turboControl is a stock-turbo campaign's sending (README, OTA modes):
// stock receivers served with one flood per part, using only what the
// stock receiver already does (docs/protocol.md §8.4–8.5):
//
//   - The Announce says broadcasted:true, so a receiver that sees every
//     part in order writes it and sends nothing (silent).
//   - One stream pushes the parts in order as BROADCAST Data, at the rate
//     of the busiest radio. At the frontier (parts never pushed before)
//     a part's first copy says broadcasted:true, so a silent receiver
//     that lost the part before drops out of broadcast mode and at once
//     asks for the part it lacks. Repeats of parts behind the frontier
//     say broadcasted:false, so receivers ahead of them stay silent.
//   - Once any request shows that parts get lost, each part goes out
//     twice in a row: a receiver that lost the first copy writes the
//     second (in sequence), one that had it ignores it. A receiver falls
//     behind only if it loses both.
//   - A receiver out of broadcast mode asks for the next part after each
//     one it writes, in the name of the Data's dest. Each push is
//     addressed to a ticket of its own, so a request tells which push
//     it follows: a request for k after a push of k or later is a drop
//     out (stuck at k at once); otherwise more asks for k than for any of
//     the few parts after it, once their requests had time to come, mean
//     a receiver lost k (a lost request hides one ask, not the next ones).
//   - Lowest first: whoever is seen stuck at k, the stream goes back to k
//     (a new pass) and carries everyone on from there together; those
//     ahead ignore the repeats. Receivers waiting in the pass that was
//     cut short are carried over, so one that loses a part again shows.
//   - After the last part, a pass from the lowest part still asked for;
//     with nobody behind, the last part goes again with broadcasted:true
//     (a probe): a silent receiver that lost the tail completes or drops
//     out and asks. Probes nobody answers back off to one a minute.
//
// Every Data carries the campaign's md5, and a campaign has one image, so
// a receiver never writes a part of another image.
type turboControl struct {
	on     bool
	chunks int
	// base+n is the ticket (Data dest) of the n-th part pushed; pushed
	// remembers the last turboTickets of them. Any value is valid as a
	// dest of BROADCAST Data: the receiver only echoes it.
	base   uint32
	seq    uint32
	pushed [turboTickets]turboPushed
	pass   turboPass
	cut    []turboPass // passes cut short by a go-back, with checks left
	passes int         // passes started; the next one's id
	// frontier is how many parts went out at least once: a push below it
	// is a repeat.
	frontier int
	copies   int // pushes of each part in a row: 1 until a loss shows, then 2
	// behind is the lowest part asked for by a receiver the current pass
	// will not bring it (chunks: none).
	behind int
	nextAt time.Time // when the next push may go
	// idleUntil ends the wait after a pass for the requests its last
	// parts cause.
	idleUntil time.Time
	probeGap  time.Duration
	rtt       rttEstimate
	lastHeard time.Time   // the last request
	lastSent  time.Time   // the last push
	lastPush  []time.Time // each part's last first copy, for round trips
	// Requests load the relays' radios on their way up: the push rate
	// leaves room for those each push causes (per control window).
	window           time.Time
	pushes, requests int
	requestsPerPush  float64
	rate             linkRate // the rate's multiple of the model's
	lastLen          int      // the last push's bytes
}

// turboPushed is what a ticket was given to.
type turboPushed struct {
	pass, part int
}

// turboPass is one in-order stream of parts.
type turboPass struct {
	id      int
	start   int
	pos     int // next part
	copy    int // copies of pos already pushed
	running bool
	probe   bool
	// asks[k] counts requests for part k in this pass's name, and those
	// in another name for a part this pass has yet to push.
	asks []int32
	// checked is the next part whose asks are compared with those after
	// it, once their requests had time to come; limit is where a go-back
	// cut the pass short (chunks: not cut).
	checked, limit int
}

// Turbo tuning.
const (
	// turboMinWait and turboMaxWait bound the wait for the requests a
	// push causes (srtt + 4 rttvar of the request round trip).
	turboMinWait = 200 * time.Millisecond
	turboMaxWait = 10 * time.Second
	// turboInitialRTT is the round trip assumed before one was measured:
	// a few hops of an ESP8266 mesh at 4 KiB parts.
	turboInitialRTT = time.Second
	// turboMaxProbeGap bounds the backoff of probes nobody answers.
	turboMaxProbeGap = time.Minute
	// turboLookahead is how many parts after k a stuck receiver would
	// have asked for: one lost request does not make a node look stuck.
	turboLookahead = 3
	// turboTickets is how many pushes a request is traced back to; an
	// older ticket counts as another name.
	turboTickets = 1024
	// turboMaxCuts bounds the passes cut short whose checks are kept.
	turboMaxCuts = 16
)

// turboPartSize is the default part size of stock-turbo campaigns. The
// stock receiver writes whatever a part holds, and a bigger part costs
// less airtime per byte: one message overhead, one JSON envelope and one
// request of a requesting receiver per part. A 4 KiB part makes a Data
// package of about 5.7 KB, under the 8192-byte package limit, and the
// two copies a relay sends its children fit a third of an ESP8266 radio
// queue (32 KiB), so the requests coming up beside them rarely overflow
// it. The largest part that fits the limit (5.5 KiB) would save about 2%
// of the airtime per byte.
const turboPartSize = 4096

// stockPartSize is the part size of a stock campaign in mode.
func (d *Distributor) stockPartSize(mode Mode) int {
	if mode == ModeStockTurbo {
		return d.cfg.TurboPartSize
	}
	return d.cfg.StockChunkSize
}

// newTurbo is a stock-turbo campaign's sending, its tickets counting up
// from the distributor's id.
func (d *Distributor) newTurbo(now time.Time, chunks int) turboControl {
	var base uint32
	if d.host != nil {
		base = d.host.ID()
	}
	return newTurboControl(chunks, base, now, d.cfg.PushDelay)
}

func newTurboControl(chunks int, base uint32, now time.Time, delay time.Duration) turboControl {
	return turboControl{
		on: true, chunks: chunks, base: base, copies: 1, behind: chunks, nextAt: now.Add(delay),
		lastPush: make([]time.Time, chunks), rtt: rttEstimate{srtt: turboInitialRTT, rttvar: turboInitialRTT / 2},
	}
}

func (t *turboControl) release() {
	*t = turboControl{}
}

// wait is how long after a push the requests it causes have arrived.
func (t *turboControl) wait() time.Duration {
	return min(max(t.rtt.srtt+4*t.rtt.rttvar, turboMinWait), turboMaxWait)
}

// request counts a stock DataRequest for part k in from's name.
func (t *turboControl) request(now time.Time, k int, from uint32) {
	t.lastHeard = now
	t.requests++
	// A silent receiver asks only when it lost a part: parts get lost.
	t.copies = 2
	p := &t.pass
	if off := from - t.base; off < t.seq && t.seq-off <= turboTickets && p.asks != nil {
		got := t.pushed[off%turboTickets]
		if q := t.find(got.pass); q != nil {
			// In the name of a push of q: after writing part got.part,
			// or on dropping out when got.part came out of sequence. A
			// pass cut short left the asker to the current one from
			// its limit on.
			if k <= q.limit {
				q.asks[k]++
			}
			if q != p && k >= q.limit {
				p.asks[k]++
			}
			if got.part >= k {
				t.fellBehind(k) // it lacks k: stuck
			} else if k > 0 && got.part == k-1 && !t.lastPush[k-1].IsZero() {
				if rtt := now.Sub(t.lastPush[k-1]); rtt < turboMaxWait {
					t.rtt.sample(rtt)
				}
			}
			return
		}
	}
	if p.running && (k >= p.pos || k >= p.start && now.Sub(t.lastPush[k]) < t.wait()) {
		// This pass brings it, or just did (the request left before our
		// push came): the asker follows it from here.
		p.asks[k]++
		return
	}
	t.fellBehind(k)
}

// fellBehind records a receiver stuck at part k: a loss.
func (t *turboControl) fellBehind(k int) {
	t.behind = min(t.behind, k)
	t.rate.loss()
}

// find returns the pass with id, if its requests still count.
func (t *turboControl) find(id int) *turboPass {
	if t.pass.id == id {
		return &t.pass
	}
	for i := range t.cut {
		if t.cut[i].id == id {
			return &t.cut[i]
		}
	}
	return nil
}

// stuck returns the lowest part of the pass more receivers asked for than
// for any of the turboLookahead parts after it, or t.chunks, and does the
// same for what is left to check of the passes cut short. Nothing is
// asked after the last part: probes cover it.
func (t *turboControl) stuck() int {
	low := t.stuckIn(&t.pass)
	for i := range t.cut {
		low = min(low, t.stuckIn(&t.cut[i]))
	}
	return low
}

func (t *turboControl) stuckIn(q *turboPass) int {
	for k := q.checked; k+1 < t.chunks && k < q.limit && q.asks != nil; k++ {
		if q.stuckAt(k, t.chunks) {
			return k
		}
	}
	return t.chunks
}

// stuckAt says whether more receivers asked q for part k than for any of
// the turboLookahead parts after it (those q pushed: up to its limit).
func (q *turboPass) stuckAt(k, chunks int) bool {
	after := int32(0)
	for i := k + 1; i <= min(k+turboLookahead, chunks-1, q.limit); i++ {
		after = max(after, q.asks[i])
	}
	return q.asks[k] > after
}

// check runs q's deficit checks whose requests had time to come.
func (t *turboControl) check(now time.Time, q *turboPass) {
	for q.checked+1 < t.chunks && q.checked < q.limit {
		top := min(q.checked+turboLookahead, t.chunks-1, q.limit)
		// Requests for top follow the push of top-1.
		if top > q.pos || now.Before(t.lastPush[top-1].Add(t.wait())) {
			return
		}
		if q.stuckAt(q.checked, t.chunks) {
			t.fellBehind(q.checked)
		}
		q.checked++
	}
}

// goBack runs the due checks and restarts the running pass from the
// lowest part someone is seen to wait for. Going back costs the parts
// between; a later pass for the laggard would cost the rest of the image
// (measured: 1 MiB, 100 nodes, 1% loss, 372 s with later passes, 216 s
// going back).
func (t *turboControl) goBack(now time.Time) {
	p := &t.pass
	if p.asks == nil {
		return
	}
	t.check(now, p)
	for i := range t.cut {
		t.check(now, &t.cut[i])
	}
	t.cut = slices.DeleteFunc(t.cut, func(q turboPass) bool {
		return q.checked >= q.limit || q.checked+1 >= t.chunks
	})
	if p.running && !p.probe && t.behind < p.pos {
		t.begin(t.behind, false)
	}
}

// startPass begins the next pass: from the lowest part someone waits
// for, or a probe of the last part.
func (t *turboControl) startPass(now time.Time) bool {
	stuck := t.stuck()
	start := min(stuck, t.behind)
	if t.passes == 0 {
		start = 0 // the frontier
	}
	probe := false
	if start >= t.chunks {
		gap := t.probeGap
		if gap == 0 {
			gap = t.wait()
		}
		if now.Before(t.lastSent.Add(gap)) {
			return false
		}
		// The gap before the probe after this one.
		t.probeGap = t.wait()
		if t.lastHeard.Before(t.lastSent) && t.passes > 0 && t.pass.probe {
			t.probeGap = min(2*gap, turboMaxProbeGap) // nobody answered the last probe
		}
		start, probe = t.chunks-1, true
	}
	t.begin(start, probe)
	return true
}

func (t *turboControl) begin(start int, probe bool) {
	asks := make([]int32, t.chunks)
	if p := t.pass; p.asks != nil {
		// Those waiting in the last pass wait in this one: a receiver
		// that loses a part again says nothing, so it must show as an
		// ask without the next. Not at start: that deficit is what this
		// pass answers, and one that stays (a receiver cut off) must not
		// bring every pass back to it.
		copy(asks[start+1:], p.asks[start+1:])
		if p.running {
			// Cut short: its checks below the new start still count.
			p.limit, p.running = start, false
			if len(t.cut) == turboMaxCuts {
				t.cut = t.cut[1:]
			}
			t.cut = append(t.cut, p)
		}
	}
	t.pass = turboPass{id: t.passes, start: start, pos: start, checked: start, limit: t.chunks, running: true, probe: probe, asks: asks}
	t.passes++
	t.behind = t.chunks
}

// turbo sends a stock-turbo campaign's next push when its time came.
func (d *Distributor) turbo(now time.Time, c *dcampaign) {
	t := &c.turbo
	d.probeLinks(now, &t.rate, t.probing())
	if !t.on || now.Before(t.nextAt) || !d.pace.ready(now) {
		return
	}
	own, busiest, _ := d.fanout()
	if own == 0 {
		t.nextAt = now.Add(time.Second) // nobody to push to yet
		return
	}
	p := &t.pass
	t.goBack(now)
	if !p.running {
		if now.Before(t.idleUntil) || !t.startPass(now) {
			return
		}
	}
	part := p.pos
	// A first copy at the frontier (or after it, when only laggards are
	// left) may make a silent receiver drop out and ask: that is how a
	// lost part shows. Repeats behind the frontier must not.
	broadcasted := p.probe || p.copy == 0 && (part >= t.frontier || t.frontier >= t.chunks)
	if p.copy == 0 {
		t.pushed[t.seq%turboTickets] = turboPushed{pass: p.id, part: part}
		t.seq++
	}
	n := d.turboSend(now, c, part, broadcasted, t.base+t.seq-1)
	f := t.rate.factor()
	d.pace.charge(now, t.rate.cost(d.cfg.Radio, n, own))
	t.lastLen = n
	d.probeLinks(now, &t.rate, t.probing())
	if p.copy == 0 {
		t.lastPush[part] = now
	}
	t.lastSent = now
	if p.copy++; p.copy >= t.copies {
		p.copy = 0
		p.pos++
		t.frontier = max(t.frontier, p.pos)
	}
	if p.pos >= t.chunks {
		p.running = false
		t.idleUntil = now.Add(t.wait())
	}
	t.pushes++
	t.control(now)
	// The busiest radio sends the part once per child, and the relays
	// carry the requests it causes up to us (charged as if all crossed one
	// radio: conservative).
	per := time.Duration(busiest)*d.cfg.Radio.airtime(n) + time.Duration(t.requestsPerPush*float64(d.cfg.Radio.airtime(turboRequestLen)))
	t.nextAt = now.Add(time.Duration(float64(per) / d.cfg.Utilization / f))
}

// turboSend floods part i of c's stock variant as stock Data addressed to
// ticket (the stock receiver ignores dest; its request names it, and goes
// to the Data's from: us).
func (d *Distributor) turboSend(now time.Time, c *dcampaign, i int, broadcasted bool, ticket uint32) int {
	v := c.stock
	m := &stockMsg{Type: protocol.TypeOTAData, From: d.host.ID(), Routing: int(protocol.RouteBroadcast), MD5: c.Image.MD5,
		Hardware: c.Image.Hardware, Role: c.Image.Role, Forced: c.Forced, NoPart: uint32(v.chunks), Broadcasted: broadcasted,
		Dest: ticket, PartNo: uint32(i), Data: base64.StdEncoding.EncodeToString(v.chunk(i))}
	b := m.AppendJSON(nil)
	_ = d.host.SendRaw(now, b)
	d.stats.StockServed++
	if i == v.chunks-1 {
		c.turboLastSent(now, d.host.NodeList(false), v)
		c.lastPartAt = now
	}
	return len(b)
}

// turboRequestLen is about the encoded size of a stock DataRequest.
const turboRequestLen = 200

// control closes a control window when it is due: the requests each push
// causes.
func (t *turboControl) control(now time.Time) {
	if t.window.IsZero() {
		t.window = now.Add(controlInterval)
		return
	}
	if now.Before(t.window) || t.pushes == 0 {
		return
	}
	t.requestsPerPush = float64(t.requests) / float64(t.pushes)
	t.pushes, t.requests = 0, 0
	t.window = now.Add(controlInterval)
}

// deadline is when the next push may go (zero: off).
func (t *turboControl) deadline() time.Time {
	switch {
	case !t.on:
		return time.Time{}
	case !t.pass.running:
		at := later(t.nextAt, t.idleUntil)
		if min(t.stuck(), t.behind) >= t.chunks {
			gap := t.probeGap
			if gap == 0 {
				gap = t.wait()
			}
			at = later(at, t.lastSent.Add(gap))
		}
		return at
	}
	return t.nextAt
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
