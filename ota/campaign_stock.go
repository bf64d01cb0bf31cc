package ota

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Stock receivers send nothing but DataRequests (docs/protocol.md §8.4):
// no report, no status, nothing after they install. What a campaign knows
// of them is inferred, and marked Estimated:
//   - a request for part k: the node holds k chunks (downloading);
//   - the last part served, then no request for stockInstallQuiet, or the
//     node left the mesh and came back (its reboot 2 s after Update.end):
//     installed. A failed MD5 check makes the node ask for part 0 again
//     at the next announce, which puts it back to downloading;
//   - no request while downloading for stockLostAfter, or for
//     stockGoneAfter while it is not in the mesh, or gone after its last
//     part and not back within stockRejoin: lost.
const (
	// stockRetry is the C++ request task's interval.
	stockRetry = 30 * time.Second
	// stockInstallQuiet outlasts one retry: a node whose last chunk was
	// lost asks for it again within stockRetry.
	stockInstallQuiet = stockRetry + 15*time.Second
	// stockGoneAfter: two retries missed by a node that is not in the
	// mesh.
	stockGoneAfter = 2 * stockRetry
	// stockLostAfter: the C++ task's 10 retries ran out and the next
	// announce (at most a minute later) brought no request either.
	stockLostAfter = 10*stockRetry + 90*time.Second
	// stockRejoin: a rebooted ESP is back in seconds (boot, a scan of the
	// mesh channel, DHCP, node sync); one still away after this is lost.
	stockRejoin = 2 * time.Minute
	// stockPoll is how often the mesh is checked for the reboot of a node
	// that was served its last chunk.
	stockPoll = time.Second
	// stockLate: a check this long after the time it asked for means the
	// distributor itself was not running (a stalled process, a clock that
	// jumped ahead). A driver is late by milliseconds.
	stockLate = 5 * time.Second
)

// stockSeen is what the distributor saw of a stock receiver.
type stockSeen struct {
	asked      time.Time // its last request
	servedLast time.Time // when the last part was sent to it (zero: not yet)
	left       bool      // it was out of the mesh since servedLast
	// resumed: its last request came before this distributor started
	// (a gateway restart); nothing heard from it since.
	resumed bool
	// verifyFrom: a stock-turbo node back in the mesh then, being probed
	// (campaign_turbo.go); probedAt its last probe, sure its first probe
	// after an announce sent since verifyFrom.
	verifyFrom, probedAt, sure time.Time
}

// stockAsked records a stock receiver's request for part of transfer v:
// it holds part chunks. A node that reports (a Go receiver fetching the
// stock way) keeps its own word.
func (c *Campaign) stockAsked(now time.Time, from uint32, part int, v *variant) (NodeProgress, bool) {
	p, ok := c.nodes[from]
	if !c.Active() || ok && !p.Estimated {
		return NodeProgress{}, false
	}
	if !ok {
		p = &NodeProgress{Node: from, Joined: now}
	}
	next := *p
	next.State, next.Done, next.Total, next.Err, next.Updated, next.Estimated = StateDownloading, part, v.chunks, "", now, true
	next.BytesTotal, next.Bytes = v.size, v.bytesOf(part)
	next.stock = stockSeen{asked: now}
	if ok && !p.stock.servedLast.IsZero() && part < p.Done && now.Sub(p.stock.servedLast) < stockRejoin {
		// Going back after its last chunk: a restart from part 0 after
		// a failed MD5 check, or a request task of the C++ receiver's
		// that an earlier one left running (Q-19 j) repeating its old
		// request while the node installs. Its reboot still counts.
		next.stock.servedLast, next.stock.left = p.stock.servedLast, p.stock.left
	}
	if !ok || next.Bytes < p.Bytes || p.Terminal() {
		// Its first request, or it started over: the rate counts from here.
		next.rateFrom, next.rateBase, next.Rate = now, next.Bytes, 0
	}
	if el := now.Sub(next.rateFrom).Seconds(); el > 0 {
		next.Rate = float64(next.Bytes-next.rateBase) / el
	}
	next.ETA = 0
	if next.Rate > 0 {
		next.ETA = time.Duration(float64(next.BytesTotal-next.Bytes) / next.Rate * float64(time.Second))
	}
	changed := !ok || p.State != next.State || p.Done != next.Done
	c.put(&next)
	if changed {
		c.noteChange(now)
	}
	c.stockNext = c.stockDeadline(now)
	return next, changed
}

// stockServed records that part of v went to a stock receiver.
func (c *Campaign) stockServed(now time.Time, to uint32, part int, v *variant) {
	if p, ok := c.nodes[to]; ok && p.Estimated && p.State == StateDownloading && part == v.chunks-1 {
		p.stock.servedLast, p.stock.left = now, false
		c.stockNext = c.stockDeadline(now)
	}
}

// stockCheck moves stock receivers on from what their silence and the
// mesh say (inMesh: whether a node is in the mesh now); it returns the
// nodes that changed.
func (c *Campaign) stockCheck(now time.Time, inMesh func(uint32) bool) []NodeProgress {
	if late := now.Sub(c.stockNext); !c.stockNext.IsZero() && late > stockLate {
		c.stockUnwatched(late)
	}
	var out []NodeProgress
	// By id: the changes are emitted in this order, which must not vary
	// between runs.
	for _, id := range slices.Sorted(maps.Keys(c.nodes)) {
		p := c.nodes[id]
		if !p.Estimated || p.Terminal() {
			continue
		}
		next := *p
		silent := now.Sub(p.stock.asked)
		switch {
		case !p.stock.servedLast.IsZero():
			back := inMesh(p.Node)
			left := p.stock.left || !back
			since := now.Sub(p.stock.servedLast)
			// Quiet counts only if nothing was asked after the last chunk.
			quiet := !p.stock.asked.After(p.stock.servedLast) && since >= stockInstallQuiet
			switch {
			case left && back, !left && quiet:
				next.State, next.Done, next.Bytes, next.ETA = StateInstalled, next.Total, next.BytesTotal, 0
			case left && since >= stockRejoin:
				next.State, next.Err = StateLost, fmt.Sprintf("left the mesh after its last chunk and was not back within %s", stockRejoin)
			case since >= stockRejoin:
				// It asked again and did not reboot: downloading, judged
				// by its requests from here.
				p.stock.servedLast = time.Time{}
				continue
			default:
				p.stock.left = left
				continue
			}
		case silent >= stockLostAfter && p.stock.resumed && inMesh(p.Node):
			// Not a word since we restarted, though it is in the mesh and
			// the announces went out: a C++ receiver short of the image
			// asks every 30 s, or at the next announce once its retries
			// ran out. It installed while we were down.
			next.State, next.Done, next.Bytes, next.ETA = StateInstalled, next.Total, next.BytesTotal, 0
		case silent >= stockLostAfter:
			next.State, next.Err = StateLost, fmt.Sprintf("no request for %s", silent.Round(time.Second))
		case silent >= stockGoneAfter && !inMesh(p.Node):
			next.State, next.Err = StateLost, fmt.Sprintf("left the mesh, no request for %s", silent.Round(time.Second))
		default:
			continue
		}
		next.Updated = now
		c.put(&next)
		out = append(out, next)
	}
	out = append(out, c.turboCheck(now, inMesh)...)
	if len(out) > 0 {
		c.noteChange(now)
	}
	c.stockNext = c.stockDeadline(now)
	return out
}

// stockUnwatched moves the stock receivers' silences on by d, a time the
// distributor did not watch them: their requests may be waiting for it,
// so that time is not theirs. Without this, a gateway back from a stall of
// ten minutes would find every stock node lost at once, end the campaign
// and leave the nodes asking for chunks no one serves.
func (c *Campaign) stockUnwatched(d time.Duration) {
	shift := func(s *stockSeen) {
		s.asked = s.asked.Add(d)
		if !s.servedLast.IsZero() {
			s.servedLast = s.servedLast.Add(d)
		}
	}
	for _, p := range c.nodes {
		if p.Estimated && !p.Terminal() {
			shift(&p.stock)
		}
	}
	for _, s := range c.rebootWatch.nodes {
		shift(s)
	}
}

// stockDeadline is when stockCheck next has something to decide, after
// now: the polls for a reboot, and the silences of downloading nodes (a
// node that stays in the mesh is checked again every stockRetry).
func (c *Campaign) stockDeadline(now time.Time) time.Time {
	var next time.Time
	after := func(from time.Time, every time.Duration) time.Time {
		return from.Add((now.Sub(from)/every + 1) * every)
	}
	for _, p := range c.nodes {
		if !p.Estimated || p.Terminal() {
			continue
		}
		t := p.stock.asked.Add(stockGoneAfter)
		switch {
		case !p.stock.servedLast.IsZero():
			t = after(p.stock.servedLast, stockPoll)
		case !t.After(now):
			t = after(t, stockRetry)
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if len(c.rebootWatch.nodes) > 0 && (next.IsZero() || now.Add(stockPoll).Before(next)) {
		next = now.Add(stockPoll)
	}
	return next
}
