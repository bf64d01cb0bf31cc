package ota

import (
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// pushFetch is the broadcast strategy: the distributor pushes every chunk
// once; a receiver notices gaps (links are FIFO, so chunk j pushed while
// i < j never came means i was lost) and asks its parent for them (hop by
// hop, routing 0), or the distributor after a Refuse or parentTries asks.
type pushFetch struct {
	r *Receiver
	t *incoming

	pushedUpTo int           // highest pushed index seen + 1 (the Report's "hi")
	lost       int           // pushed chunks found missing so far
	lastPush   time.Time     // when the last pushed chunk came
	pushGap    time.Duration // smoothed gap between pushed chunks
	pushOver   bool          // End seen, or the push went idle
	missing    map[int]*repairAsk
	nextAsk    time.Time
	// repairRTT and repairVar estimate the post-push repair round trip.
	repairRTT, repairVar time.Duration
}

// repairAsk is the state of one missing chunk.
type repairAsk struct {
	deadline time.Time
	tries    int
	asked    bool
	sentAt   time.Time // first ask after the push ended (RTT sample), or zero
}

func (f *pushFetch) begin(now time.Time) {
	f.missing = map[int]*repairAsk{}
	f.r.pickSources(f.t)
	if f.t.late {
		f.pushedUpTo = f.t.offer.Chunks
		f.ended(now)
	}
}
func (f *pushFetch) stored(i int) { delete(f.missing, i) }
func (f *pushFetch) discard()     { f.pushedUpTo, f.lost = 0, 0 }

// childWaits asks for a chunk a child lacks only when the push has passed
// it: a chunk the push has not reached yet will come with it.
func (f *pushFetch) childWaits(i int) {
	if i < f.pushedUpTo || f.pushOver {
		f.want(i)
	}
}

func (f *pushFetch) want(i int) {
	if f.t.have.Has(i) {
		return
	}
	if _, ok := f.missing[i]; !ok {
		f.missing[i] = &repairAsk{}
	}
}

func (f *pushFetch) arrived(now time.Time, i int, pushed bool) {
	t := f.t
	if pushed {
		if i > f.pushedUpTo {
			for j := f.pushedUpTo; j < i; j++ {
				if !t.have.Has(j) {
					f.lost++
					f.want(j)
				}
			}
		}
		if i >= f.pushedUpTo {
			f.pushedUpTo = i + 1
		}
		if !f.lastPush.IsZero() {
			g := now.Sub(f.lastPush)
			if f.pushGap == 0 {
				f.pushGap = g
			} else {
				f.pushGap = (7*f.pushGap + g) / 8
			}
		}
		f.lastPush = now
	}
	if a := f.missing[i]; a != nil && !pushed && a.tries == 1 && !a.sentAt.IsZero() {
		f.sampleRepairRTT(now.Sub(a.sentAt))
	}
}

// onEnd takes the distributor's End (725) of the push.
func (f *pushFetch) onEnd(now time.Time) {
	t := f.t
	for j := f.pushedUpTo; j < t.offer.Chunks; j++ {
		if !t.have.Has(j) {
			f.lost++
		}
	}
	f.pushedUpTo = t.offer.Chunks
	f.ended(now)
}

// ended asks for everything still missing once the push is over. The
// asks made during the push waited behind it on every relay's radio, so
// their backoff says nothing about loss: it starts again, and asks still
// in flight are given the shorter post-push timeout.
func (f *pushFetch) ended(now time.Time) {
	if f.pushOver {
		return
	}
	f.pushOver = true
	t := f.t
	for j := t.have.NextMissing(0); j >= 0; j = t.have.NextMissing(j + 1) {
		f.want(j)
	}
	for _, a := range f.missing {
		a.tries = 0
		a.sentAt = time.Time{}
		if d := now.Add(f.askTimeout()); a.asked && a.deadline.After(d) {
			a.deadline = d
		}
	}
}

// onRefuse turns to the distributor when the parent does not hold the
// transfer (it never took part, or finished and dropped it). The asks the
// parent will not answer go out again at once: waiting out their
// deadlines would cost a NeedTimeout for nothing.
func (f *pushFetch) onRefuse(now time.Time) {
	for _, a := range f.missing {
		if a.asked {
			a.asked = false
			a.deadline = now
		}
	}
}

// sampleRepairRTT folds one post-push repair round trip into the
// estimate (RFC 6298 gains).
func (f *pushFetch) sampleRepairRTT(d time.Duration) {
	if f.repairRTT == 0 {
		f.repairRTT, f.repairVar = d, d/2
		return
	}
	diff := f.repairRTT - d
	if diff < 0 {
		diff = -diff
	}
	f.repairVar = (3*f.repairVar + diff) / 4
	f.repairRTT = (7*f.repairRTT + d) / 8
}

// idle is how long a broadcast receiver waits for the next pushed chunk
// before it takes the push for ended (its tail or the End lost) and asks
// for everything it misses: eight push gaps, at least a second, at most
// IdleTimeout. A relay that is merely late must not make its children ask
// for chunks the push has not reached yet.
func (f *pushFetch) idle() time.Duration {
	if f.pushGap == 0 {
		return f.r.cfg.IdleTimeout
	}
	return min(max(8*f.pushGap, time.Second), f.r.cfg.IdleTimeout)
}

func (f *pushFetch) nextDeadline() time.Time {
	idle := f.t.lastChunk.Add(f.idle())
	if !f.nextAsk.IsZero() && f.nextAsk.Before(idle) {
		return f.nextAsk
	}
	return idle
}

// nakJitter spreads the first ask after a gap so that siblings that lost
// the same chunk do not all ask in the same instant.
const nakJitter = 200 * time.Millisecond

func (f *pushFetch) tick(now time.Time) {
	r, t := f.r, f.t
	if !t.have.Full() && now.Sub(t.lastChunk) >= f.idle() {
		// The push stopped (or its tail was lost): ask for everything
		// still missing rather than wait for ever (Q-19 b).
		t.lastChunk = now
		f.ended(now)
		for j := t.have.NextMissing(0); j >= 0; j = t.have.NextMissing(j + 1) {
			f.want(j)
		}
	}
	f.nextAsk = time.Time{}
	if len(f.missing) == 0 {
		return
	}
	defer func() {
		// Due asks that found the window full wait for an in-flight ask
		// to expire or for a chunk to arrive: only future deadlines count.
		for _, a := range f.missing {
			if a.deadline.After(now) && (f.nextAsk.IsZero() || a.deadline.Before(f.nextAsk)) {
				f.nextAsk = a.deadline
			}
		}
	}()
	inFlight := 0
	for _, a := range f.missing {
		if a.asked && now.Before(a.deadline) {
			inFlight++
		}
	}
	if r.cfg.PeerToPeer && f.pushOver {
		t.src.silent(now)
	}
	r.followParent(t)
	parent := t.src.current(r.reachable)
	var toParent, toDist []int
	for _, i := range sortedKeys(f.missing) {
		if inFlight >= r.cfg.NeedWindow {
			break
		}
		a := f.missing[i]
		if a.asked && now.Before(a.deadline) {
			continue
		}
		if !a.asked && a.deadline.IsZero() {
			a.deadline = now.Add(time.Duration(r.rng.Int64N(int64(nakJitter))))
		}
		if now.Before(a.deadline) {
			continue
		}
		if parent == 0 || a.tries >= parentTries {
			toDist = append(toDist, i)
		} else {
			toParent = append(toParent, i)
		}
		a.asked = true
		a.tries++
		if f.pushOver && a.tries == 1 {
			a.sentAt = now
		}
		a.deadline = now.Add(f.askTimeout() << min(a.tries/3, 3))
		inFlight++
	}
	if len(toParent) > 0 {
		r.sendNeed(now, t, parent, r.routeTo(parent), toParent)
		t.src.asked(now)
	}
	if len(toDist) > 0 {
		r.sendNeed(now, t, t.dist, protocol.RouteSingle, toDist)
	}
}

// parentTries is how often a broadcast receiver asks its parent for a chunk
// before asking the distributor: a parent that lacks the chunk itself gets
// it from its own parent first, which is cheaper than a unicast down the
// whole path.
const parentTries = 8

// askTimeout is how long a broadcast repair ask waits before it is asked
// again (before backoff). During the push it is NeedTimeout: relays answer
// only in the gaps the push leaves on their radio. Once the push is over
// the radios are free, and the wait follows the measured repair round
// trip (Karn's rule: first asks only), from PostPushTimeout until a
// sample exists; a lost ask then costs a few round trips, not a second.
func (f *pushFetch) askTimeout() time.Duration {
	cfg := &f.r.cfg
	if !f.pushOver {
		return cfg.NeedTimeout
	}
	if f.repairRTT == 0 {
		return min(cfg.PostPushTimeout, cfg.NeedTimeout)
	}
	d := f.repairRTT + 4*f.repairVar
	return min(max(d, minAskTimeout), cfg.NeedTimeout)
}

// minAskTimeout bounds the post-push ask timeout from below: a parent
// that lacks the chunk itself needs a round trip of its own first.
const minAskTimeout = 150 * time.Millisecond
