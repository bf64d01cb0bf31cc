package ota

import (
	"fmt"
	"slices"
	"time"
)

// A campaign ends when every target has an outcome, so a node that went
// silent for good (powered off, out of range) would keep it running until
// an operator aborts it. A target that sends no news (report, request)
// for DistributorConfig.LostAfter is therefore lost, with its silence and
// whether the mesh still holds it as the reason. Silence counts from the
// node's last news, or from when it got its place in the campaign, or
// this run of the campaign started or resumed, or the distributor came
// back from a stall or a clock jump, whichever is latest.
//
// Lost ends the node's part in the campaign's count, not its chances:
// while the campaign runs, its next report puts it back, and a
// "confirmed" after the end is still recorded (Campaign.update). Stock
// receivers, which never report, have rules of their own
// (campaign_stock.go) and are left to them.

// defaultLostAfter is DistributorConfig.LostAfter's default: sixty
// progress reports missed (receivers report every 10 s while they
// download, and again 30 s apart when they run the image).
const defaultLostAfter = 10 * time.Minute

// lostWatch is what a campaign needs to tell a silent target.
type lostWatch struct {
	from time.Time // this run of the campaign started, or resumed
	next time.Time // when lostCheck next has something to decide (zero: nothing watched)
}

// restart counts silences from now on and checks again after.
func (w *lostWatch) restart(now time.Time, after time.Duration) {
	w.from, w.next = now, now.Add(after)
}

// watch makes sure a node heard from at now is checked by now+after; an
// earlier check is harmless (lostCheck computes the next one).
func (w *lostWatch) watch(now time.Time, after time.Duration) {
	if w.next.IsZero() {
		w.next = now.Add(after)
	}
}

// lostCandidates are the targets that still owe an outcome and report
// themselves, in a fixed order: the node list as given, or for a role the
// nodes that took part by id.
func (c *dcampaign) lostCandidates() []uint32 {
	ids := c.Targets.Nodes
	if len(ids) == 0 {
		ids = make([]uint32, 0, len(c.nodes))
		for id := range c.nodes {
			ids = append(ids, id)
		}
		slices.Sort(ids)
	}
	out := ids[:0:0]
	for _, id := range ids {
		if p, ok := c.nodes[id]; ok && (p.Terminal() || p.Estimated) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// heard is the latest news of node id, as lostCheck counts silence.
func (c *dcampaign) heard(id uint32) time.Time {
	t := later(c.lost.from, c.admittedAt[id])
	if p, ok := c.nodes[id]; ok {
		t = later(t, p.Updated)
	}
	return t
}

// lostCheck gives the targets silent for after the outcome lost (inMesh:
// whether a node is in the mesh now) and returns them.
func (c *dcampaign) lostCheck(now time.Time, after time.Duration, inMesh func(uint32) bool) []NodeProgress {
	var out []NodeProgress
	c.lost.next = time.Time{}
	for _, id := range c.lostCandidates() {
		silent := now.Sub(c.heard(id))
		if silent < after {
			if due := now.Add(after - silent); c.lost.next.IsZero() || due.Before(c.lost.next) {
				c.lost.next = due
			}
			continue
		}
		p, ok := c.nodes[id]
		if !ok {
			p = &NodeProgress{Node: id, Total: c.fast.chunks, BytesTotal: c.fast.size, rateFrom: c.Started}
		}
		next := *p
		where := "not in the mesh"
		if inMesh(id) {
			where = "in the mesh but silent"
		}
		next.State, next.ETA, next.Rate, next.Updated = StateLost, 0, 0, now
		next.Err = fmt.Sprintf("no news for %s (%s)", silent.Round(time.Second), where)
		if !ok {
			next.Err = fmt.Sprintf("never answered in %s (%s)", silent.Round(time.Second), where)
		}
		c.put(&next)
		out = append(out, next)
	}
	if len(out) > 0 {
		c.noteChange(now)
	}
	return out
}

// lostLate: a check this long after the time it asked for means the
// distributor itself was not running (a stalled process, a clock that
// jumped ahead); a driver is late by milliseconds.
const lostLate = 5 * time.Second

// lostCheck moves c's silent targets to lost.
func (d *Distributor) lostCheck(now time.Time, c *dcampaign) {
	if now.Sub(c.lost.next) > lostLate {
		// Reports may be waiting for a distributor that was away: that
		// time is not the nodes' silence. Counting it would find every
		// target lost at once and end the campaign under them.
		d.cfg.Logger.Info("ota: distributor was away; silences count from now", "campaign", c.ID, "late", now.Sub(c.lost.next))
		c.lost.restart(now, d.cfg.LostAfter)
		return
	}
	tree := d.host.Tree()
	for _, p := range c.lostCheck(now, d.cfg.LostAfter, tree.Contains) {
		d.cfg.Logger.Info("ota: node lost", "campaign", c.ID, "node", p.Node, "reason", p.Err)
		d.emit(c, p.Node, p)
	}
}
