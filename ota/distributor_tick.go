package ota

import (
	"math"
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
		if c.settle(now) {
			d.finish(now, c, c.State, c.Reason)
			continue
		}
		if !c.nextAnnounce.IsZero() && !now.Before(c.nextAnnounce) {
			d.announce(now, c)
		}
		d.push(now, c)
	}
	d.dropOldFinished()
	d.flush(now)
}

func (d *Distributor) announce(now time.Time, c *dcampaign) {
	// The offer first: a Go receiver that knows the offer leaves the
	// stock announce of the same image alone.
	if !d.cfg.StockOnly {
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

// earlyAnnounce are the gaps after the first announces.
var earlyAnnounce = []time.Duration{2 * time.Second, 5 * time.Second}

// pushInterval is the gap between pushed chunks that keeps the busiest
// radio of the tree (the node with the most children sends every chunk
// once per child) at Utilization × boost of its airtime.
func (d *Distributor) pushInterval(c *dcampaign, busiest int) time.Duration {
	msg := Dense.EncodedLen(c.fast.chunkSize) + 80
	per := time.Duration(busiest) * d.cfg.Radio.airtime(msg)
	return time.Duration(float64(per) / (d.cfg.Utilization * c.boost))
}

func (d *Distributor) push(now time.Time, c *dcampaign) {
	if !c.pushing || now.Before(c.nextPush) || !d.pace.ready(now) {
		return
	}
	own, busiest, _ := d.fanout()
	if own == 0 {
		c.nextPush = now.Add(time.Second) // nobody to push to yet
		return
	}
	d.ctlTick(now, c)
	if c.pushIdx >= c.fast.chunks {
		e := &End{From: d.host.ID(), Routing: int(protocol.RouteBroadcast), ID: c.ID, Sent: c.fast.chunks}
		_ = d.host.SendPackage(now, e)
		d.pace.busy(now, 80, own)
		c.pushing, c.pushDone = false, true
		return
	}
	n := d.sendReply(now, reply{c: c, idx: c.pushIdx, routing: protocol.RouteBroadcast, v: c.fast})
	d.pace.busy(now, n, own)
	c.pushIdx++
	c.interval = d.pushInterval(c, busiest)
	// Spacing counts from the actual send: catching up after a delay
	// would bunch chunks, and bunched chunks overflow relay queues.
	c.nextPush = now.Add(c.interval)
}

// observe feeds a receiver's report into the rate control: the push
// chunks it found missing since its last report, per hop of its depth.
func (d *Distributor) observe(now time.Time, c *dcampaign, r *Report) {
	prev := c.lastRep[r.From]
	c.lastRep[r.From] = *r
	dHi, dLost := r.High-prev.High, r.Lost-prev.Lost
	if dHi <= 0 || dLost < 0 {
		return
	}
	_, _, depth := d.fanout()
	hops := max(depth[r.From], 1)
	f := min(float64(dLost)/float64(dHi), 1)
	p := 1 - math.Pow(1-f, 1/float64(hops))
	c.ctl.lostHop += p * float64(dHi)
	c.ctl.samples += float64(dHi)
	c.ctl.reporters++
	if p > 2*d.cfg.LossTarget && dLost >= minCongestedLost {
		c.ctl.congested++
	}
}

// minCongestedLost is the fewest lost chunks that let one report count as
// congested: early reports cover a few pushed chunks, where one or two
// random losses already look like 6 % per hop, and a tenth of the
// reporters seeing that by chance would slow a healthy push.
const minCongestedLost = 3

// ctlTick closes a control window: AIMD on the per-hop loss the receivers
// reported. Random loss below LossTarget is repaired hop by hop and does
// not slow the push; loss above it means a radio queue overflows.
func (d *Distributor) ctlTick(now time.Time, c *dcampaign) {
	if c.ctl.until.IsZero() {
		c.ctl.until = now.Add(3 * time.Second)
		return
	}
	if now.Before(c.ctl.until) {
		return
	}
	w := c.ctl
	c.ctl = ctlWindow{until: now.Add(3 * time.Second)}
	if w.samples == 0 {
		return
	}
	loss := w.lostHop / w.samples
	old := c.boost
	if loss > d.cfg.LossTarget || w.congested*10 > w.reporters {
		c.boost = max(c.boost*0.75, 0.25)
	} else {
		c.boost = min(c.boost+0.05, 1) // the estimate is the ceiling: above it queues overflow
	}
	if c.boost != old {
		d.stats.RateChanges++
	}
	d.cfg.Logger.Debug("ota push rate", "campaign", c.ID, "loss_per_hop", loss, "boost", c.boost)
}

func (d *Distributor) flush(now time.Time) {
	for len(d.queue) > 0 && d.pace.ready(now) {
		r := d.queue[0]
		d.queue = d.queue[1:]
		n := d.sendReply(now, r)
		count := 1
		if r.routing == protocol.RouteBroadcast {
			count, _, _ = d.fanout()
		}
		d.pace.busy(now, n, count)
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
		if c.pushing {
			t := c.nextPush
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
