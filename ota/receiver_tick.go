package ota

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// Tick implements mesh.Plugin.
func (r *Receiver) Tick(now time.Time) {
	if r.trial {
		switch {
		case !r.selfTestAt.IsZero() && !now.Before(r.selfTestAt):
			r.selfTestAt = time.Time{}
			md5, _ := r.cfg.Store.Active()
			if r.cfg.SelfTest(md5) {
				if err := r.Confirm(now); err != nil {
					r.cfg.Logger.Warn("ota receiver: confirm", "err", err)
				}
			} else {
				r.rollback(now, "self test failed")
			}
		case !r.trialDeadline.IsZero() && !now.Before(r.trialDeadline):
			r.rollback(now, "new image did not confirm in time")
		}
	}
	r.deliver(now)
	r.tickTransfer(now)
	r.flush(now)
}

func (r *Receiver) rollback(now time.Time, why string) {
	md5, _ := r.cfg.Store.Active()
	if err := r.cfg.Store.Rollback(now); err != nil {
		r.cfg.Logger.Error("ota receiver: rollback", "err", err)
	}
	r.trial = false
	r.rolledBack = md5
	r.setState(now, StateRolledBack, why)
	if _, keeps := r.cfg.Store.(OriginStore); keeps && r.cfg.Restart != nil {
		// The restart follows at once and could cut the report off on
		// its way out; the next start reports it from the store's origin.
		r.trialOrigin = nil
	} else {
		r.final(now, &Report{State: string(StateRolledBack), Error: why}, md5)
	}
	if r.cfg.Restart != nil {
		r.cfg.Restart(now)
	}
}

// NextDeadline implements mesh.Plugin.
func (r *Receiver) NextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if r.trial {
		at(r.selfTestAt)
		at(r.trialDeadline)
	}
	if len(r.out) > 0 {
		at(r.pace.readyAt())
	}
	if p := r.pending; p != nil && p.dist != 0 {
		at(p.retry)
	}
	t := r.cur
	if t == nil || r.state != StateDownloading {
		return next
	}
	if t.fromOf {
		at(t.nextReport)
	}
	switch {
	case t.stock:
		if !t.reqNext.IsZero() {
			at(t.reqNext)
		} else {
			at(t.waitTill)
		}
	case t.mode == ModePipelined:
		for _, d := range t.outstanding {
			at(d)
		}
		if len(t.outstanding) == 0 {
			at(t.lastChunk.Add(r.rto(t)))
		}
	case t.mode == ModeBroadcast:
		at(t.nextAsk)
		at(t.lastChunk.Add(r.idle(t)))
	}
	return next
}

func (r *Receiver) tickTransfer(now time.Time) {
	t := r.cur
	if t == nil || r.state != StateDownloading {
		return
	}
	if t.fromOf && !now.Before(t.nextReport) {
		r.sendReport(now, t.dist, r.progressReport())
		t.nextReport = now.Add(r.cfg.ReportInterval)
	}
	switch {
	case t.stock:
		r.tickStock(now, t)
	case t.mode == ModePipelined:
		r.tickPipelined(now, t)
	case t.mode == ModeBroadcast:
		r.tickBroadcast(now, t)
	}
	r.flush(now)
}

func (r *Receiver) tickStock(now time.Time, t *rxTransfer) {
	if t.reqNext.IsZero() {
		if t.waitTill.IsZero() || now.Before(t.waitTill) {
			return
		}
		// Q-19(b): a waiting broadcast receiver that gets nothing asks for
		// itself, in its own name and as plain unicast (Q-19 h).
		t.bcast = false
		t.reqPart = t.have.NextMissing(0)
		t.reqTries = 0
		t.reqNext = now
	}
	if now.Before(t.reqNext) {
		return
	}
	if t.reqTries >= r.cfg.RequestTries {
		// Stock gives up here until the next announce; the announce runs
		// only for an hour, so keep trying slowly instead of hanging.
		t.stalled = true
		t.reqTries = 0
		t.reqNext = now.Add(10 * r.cfg.RequestRetry)
		return
	}
	if t.reqPart < 0 {
		t.reqPart = t.have.NextMissing(0)
		if t.reqPart < 0 {
			return
		}
	}
	o := &t.offer
	req := &stockMsg{Type: protocol.TypeOTADataRequest, From: r.host.ID(), Routing: int(protocol.RouteSingle),
		MD5: o.MD5, Hardware: o.Hardware, Role: o.Role, Forced: o.Forced, NoPart: uint32(o.Chunks),
		Broadcasted: t.bcast, Compressed: o.Method != "none", Dest: t.dist, PartNo: uint32(t.reqPart)}
	_ = r.host.SendPackage(now, req)
	r.stats.StockRequests++
	r.asked = append(r.asked, t.reqPart)
	t.reqTries++
	t.reqNext = now.Add(r.cfg.RequestRetry)
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (r *Receiver) tickPipelined(now time.Time, t *rxTransfer) {
	win := t.offer.Window
	if r.cfg.Window > 0 {
		win = r.cfg.Window
	}
	if win <= 0 {
		win = 8
	}
	var ask []int
	for _, i := range sortedKeys(t.outstanding) {
		if !now.Before(t.outstanding[i]) {
			ask = append(ask, i)
			delete(t.sentAt, i) // Karn: no RTT sample from a repeated ask
		}
	}
	if len(t.outstanding) == 0 && len(ask) == 0 && now.Sub(t.lastChunk) >= r.rto(t) {
		t.lastChunk = now // nothing outstanding and nothing arriving: restart the window
	}
	for i := t.have.NextMissing(0); i >= 0 && len(t.outstanding)-len(ask)+len(ask) < win; i = t.have.NextMissing(i + 1) {
		if _, ok := t.outstanding[i]; ok {
			continue
		}
		ask = append(ask, i)
		t.outstanding[i] = time.Time{}
		t.sentAt[i] = now
	}
	if len(ask) == 0 {
		return
	}
	slices.Sort(ask)
	rto := r.rto(t)
	for _, i := range ask {
		t.outstanding[i] = now.Add(rto)
	}
	r.sendNeed(now, t, t.dist, protocol.RouteSingle, ask)
}

func (r *Receiver) sendNeed(now time.Time, t *rxTransfer, to uint32, routing protocol.Routing, parts []int) {
	n := &Need{From: r.host.ID(), Dest: to, Routing: int(routing), ID: t.id, Parts: FormatRanges(parts)}
	_ = r.host.SendPackage(now, n)
	r.stats.NeedsSent++
	r.stats.ChunksAsked += len(parts)
	r.asked = append(r.asked, parts...)
}

// nakJitter spreads the first ask after a gap so that siblings that lost
// the same chunk do not all ask in the same instant.
const nakJitter = 200 * time.Millisecond

func (r *Receiver) tickBroadcast(now time.Time, t *rxTransfer) {
	if !t.have.Full() && now.Sub(t.lastChunk) >= r.idle(t) {
		// The push stopped (or its tail was lost): ask for everything
		// still missing rather than wait for ever (Q-19 b).
		t.lastChunk = now
		r.pushEnded(now, t)
		for j := t.have.NextMissing(0); j >= 0; j = t.have.NextMissing(j + 1) {
			r.addWant(t, j)
		}
	}
	t.nextAsk = time.Time{}
	if len(t.want) == 0 {
		return
	}
	defer func() {
		// Due asks that found the window full wait for an in-flight ask
		// to expire or for a chunk to arrive: only future deadlines count.
		for _, a := range t.want {
			if a.deadline.After(now) && (t.nextAsk.IsZero() || a.deadline.Before(t.nextAsk)) {
				t.nextAsk = a.deadline
			}
		}
	}()
	inFlight := 0
	for _, a := range t.want {
		if a.asked && now.Before(a.deadline) {
			inFlight++
		}
	}
	parent := r.parent(t.dist)
	var toParent, toDist []int
	for _, i := range sortedKeys(t.want) {
		if inFlight >= r.cfg.NeedWindow {
			break
		}
		a := t.want[i]
		if a.asked && now.Before(a.deadline) {
			continue
		}
		if !a.asked && a.deadline.IsZero() {
			a.deadline = now.Add(time.Duration(r.rng.Int64N(int64(nakJitter))))
		}
		if now.Before(a.deadline) {
			continue
		}
		if parent == 0 || parent == t.dist || t.parentRefused || a.tries >= parentTries {
			toDist = append(toDist, i)
		} else {
			toParent = append(toParent, i)
		}
		a.asked = true
		a.tries++
		if t.ended && a.tries == 1 {
			a.sentAt = now
		}
		a.deadline = now.Add(r.askTimeout(t) << min(a.tries/3, 3))
		inFlight++
	}
	if len(toParent) > 0 {
		r.sendNeed(now, t, parent, protocol.RouteNeighbour, toParent)
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
func (r *Receiver) askTimeout(t *rxTransfer) time.Duration {
	if !t.ended {
		return r.cfg.NeedTimeout
	}
	if t.repairRTT == 0 {
		return min(r.cfg.PostPushTimeout, r.cfg.NeedTimeout)
	}
	d := t.repairRTT + 4*t.repairVar
	return min(max(d, minAskTimeout), r.cfg.NeedTimeout)
}

// minAskTimeout bounds the post-push ask timeout from below: a parent
// that lacks the chunk itself needs a round trip of its own first.
const minAskTimeout = 150 * time.Millisecond
