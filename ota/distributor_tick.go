package ota

import (
	"encoding/base64"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// Tick implements mesh.Plugin: announces, the broadcast push and paced
// answers.
func (d *Distributor) Tick(now time.Time) {
	for _, c := range d.campaigns {
		if c.State != CampaignRunning {
			continue
		}
		if !c.stockNext.IsZero() && !now.Before(c.stockNext) {
			d.stockCheck(now, c)
		}
		if !c.lost.next.IsZero() && !now.Before(c.lost.next) {
			d.lostCheck(now, c)
		}
		if len(c.Targets.Queue) > 0 {
			d.admit(now, c)
		}
		if c.settle(now) {
			d.finish(now, c, c.State, c.Reason)
			continue
		}
		if !c.nextAnnounce.IsZero() && !now.Before(c.nextAnnounce) && !c.holdAnnounce(now) {
			d.announce(now, c)
		}
		d.push(now, c)
		d.turbo(now, c)
	}
	d.dropOldFinished()
	d.flush(now)
}

func (d *Distributor) announce(now time.Time, c *dcampaign) {
	// The offer first: a Go receiver that knows the offer leaves the
	// stock announce of the same image alone.
	if !d.cfg.StockOnly && c.Mode != ModeStockTurbo {
		for _, o := range c.offers {
			o.From = d.host.ID()
			_ = d.host.SendPackage(now, &o)
		}
	}
	a := &stockMsg{Type: protocol.TypeOTAAnnounce, From: d.host.ID(), Routing: int(protocol.RouteBroadcast),
		MD5: c.Image.MD5, Hardware: c.Image.Hardware, Role: c.Image.Role, Forced: c.Forced,
		NoPart: uint32(c.stock.chunks), Broadcasted: c.stockBcast}
	_ = d.host.SendPackage(now, a)
	d.stats.Announces++
	c.announced++
	c.announcedAt = now
	if c.announced >= d.cfg.AnnounceCount {
		c.nextAnnounce = time.Time{}
		return
	}
	c.nextAnnounce = now.Add(d.cfg.AnnounceInterval)
	if c.announced <= len(earlyAnnounce) {
		// Repeat the first announces soon: a receiver that lost the first
		// offer should not wait a whole interval.
		c.nextAnnounce = now.Add(min(earlyAnnounce[c.announced-1], d.cfg.AnnounceInterval))
	}
}

// stockRestart outlasts the 2 s between a stock receiver's good image and
// its restart (ota.hpp).
const stockRestart = 3 * time.Second

// holdAnnounce puts the next announce off while a stock receiver may be
// between a good image and its restart. In that window ota.hpp forgets
// the transfer when the last chunk comes again (its write fails, Update
// having ended), an announce takes it up from part 0, and Update.begin
// on part 0 erases the partition not running on ESP32 — the one otadata
// now boots: the node restarts into its old image, with ota_fn naming the
// new one, and never fetches it again.
func (c *dcampaign) holdAnnounce(now time.Time) bool {
	if !c.restarting(now) {
		return false
	}
	c.nextAnnounce = c.lastPartAt.Add(stockRestart)
	return true
}

// restarting reports whether a stock receiver may be between a good
// image and its restart.
func (c *dcampaign) restarting(now time.Time) bool {
	return !c.lastPartAt.IsZero() && now.Before(c.lastPartAt.Add(stockRestart))
}

// stockCheck moves c's stock receivers on from their silence and their
// presence in the mesh.
func (d *Distributor) stockCheck(now time.Time, c *dcampaign) {
	tree := d.host.Tree()
	for _, p := range c.stockCheck(now, tree.Contains) {
		d.emit(c, p.Node, p)
	}
	if probes := c.rebootWatch.probe; len(probes) > 0 {
		c.rebootWatch.probe = nil
		d.turboProbe(now, c, probes)
	}
}

// turboProbe checks that stock-turbo nodes back in the mesh installed
// (campaign_turbo.go): an announce, for receivers that forgot the
// transfer or never took it up, unless a node may be between a good image
// and its restart (holdAnnounce); then the last chunk, flagged
// broadcasted, to each node.
func (d *Distributor) turboProbe(now time.Time, c *dcampaign, nodes []uint32) {
	v := c.stock
	last := v.chunks - 1
	msg := stockMsg{From: d.host.ID(), MD5: c.Image.MD5, Hardware: c.Image.Hardware, Role: c.Image.Role, Forced: c.Forced,
		NoPart: uint32(v.chunks), Broadcasted: true}
	if !c.restarting(now) {
		a := msg
		a.Type, a.Routing = protocol.TypeOTAAnnounce, int(protocol.RouteBroadcast)
		_ = d.host.SendPackage(now, &a)
		d.stats.Announces++
		c.announcedAt = now
	}
	// The probe does not hold announces (lastPartAt): probes go every
	// few seconds and would hold them for ever, and its chunk completes
	// a node only if it lacked the last part alone.
	c.turboProbed(now, c.announcedAt, nodes)
	data := base64.StdEncoding.EncodeToString(v.chunk(last))
	for _, id := range nodes {
		m := msg
		m.Type, m.Routing, m.Dest, m.PartNo, m.Data = protocol.TypeOTAData, int(protocol.RouteSingle), id, uint32(last), data
		_ = d.host.SendPackage(now, &m)
		d.stats.StockServed++
	}
}

// earlyAnnounce are the gaps after the first announces.
var earlyAnnounce = []time.Duration{2 * time.Second, 5 * time.Second}

func (d *Distributor) flush(now time.Time) {
	for len(d.queue) > 0 {
		r := d.queue[0]
		stockReply := r.stock && r.routing == protocol.RouteSingle
		var allowance time.Duration
		if model := d.pace.radio.airtime(r.v.chunkSize); stockReply && d.stockLink.cost(model) < model {
			// Only on a link shown faster than the model: on a shared
			// radio a second reply in its queue costs other nodes time.
			allowance = d.stockLink.cost(model)
		}
		if !d.pace.readyWithin(now, allowance) {
			return
		}
		d.queue = d.queue[1:]
		n := d.sendReply(now, r)
		if stockReply {
			cost := d.stockLink.cost(d.pace.radio.airtime(n))
			d.pace.charge(now, cost)
			d.stockLink.replied(now, r.to, r.idx, cost)
			continue
		}
		count := 1
		if r.routing == protocol.RouteBroadcast {
			count, _, _ = d.fanout()
		}
		// On links the push's probes showed faster than the model, its
		// repairs go as fast.
		d.pace.charge(now, r.c.push.link.cost(d.pace.radio, n, count))
	}
}

// NextDeadline implements mesh.Plugin.
func (d *Distributor) NextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, c := range d.campaigns {
		if c.State != CampaignRunning {
			continue
		}
		at(c.nextAnnounce)
		at(c.settleAt)
		at(c.stockNext)
		at(c.admitCheck)
		at(c.lost.next)
		if c.push.pushing {
			t := c.push.nextAt
			if r := d.pace.readyAt(); r.After(t) {
				t = r
			}
			at(t)
		}
		at(c.turbo.probeDue())
		at(c.push.probeDue())
		if t := c.turbo.deadline(); !t.IsZero() {
			if r := d.pace.readyAt(); r.After(t) {
				t = r
			}
			at(t)
		}
	}
	if len(d.queue) > 0 {
		at(d.pace.readyAt())
	}
	return next
}
