package ota

import (
	"encoding/base64"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// reply is one chunk the distributor answers with (or pushes again).
type reply struct {
	c       *dcampaign
	to      uint32
	idx     int
	routing protocol.Routing
	stock   bool
	req     *stockMsg // stock: the request to echo
	v       *variant
}

// HandlePackage implements mesh.Plugin.
func (d *Distributor) HandlePackage(now time.Time, conn mesh.ConnID, h protocol.Header, raw []byte) {
	if h.Dest != d.host.ID() {
		return
	}
	switch h.Type {
	case protocol.TypeOTADataRequest:
		d.onStockRequest(now, raw)
	case TypeNeed:
		d.onNeed(now, h, raw)
	case TypeReport:
		d.onReport(now, raw)
	}
	d.flush(now)
}

// onStockRequest answers a DataRequest (11) with Data (12) if it asks for
// a chunk of something a running campaign announced (Q-19 f: stock serves
// anything).
func (d *Distributor) onStockRequest(now time.Time, raw []byte) {
	q, err := decodeStock(raw)
	if err != nil {
		d.stats.IgnoredRequests++
		return
	}
	for _, c := range d.campaigns {
		if c.State != CampaignRunning || q.MD5 != c.Image.MD5 || q.Role != c.Image.Role || q.Hardware != c.Image.Hardware {
			continue
		}
		if c.Mode == ModeStockTurbo {
			// The request names the Data's dest, not the requester.
			if q.Compressed || int(q.NoPart) != c.stock.chunks || int(q.PartNo) >= c.stock.chunks {
				continue
			}
			c.turboHeard(q.From)
			c.turbo.request(now, int(q.PartNo), q.From)
			// Someone is still behind: a campaign for a role ends only
			// after a quiet period without requests.
			c.noteChange(now)
			d.turbo(now, c)
			return
		}
		if !c.Targeted(q.From) {
			// A stock node cannot read the node list: it asks, in vain.
			continue
		}
		v := c.stock
		if q.Compressed {
			if c.Mode != ModeStock || !c.fast.compressed {
				continue
			}
			v = c.fast
		}
		if int(q.NoPart) != v.chunks || int(q.PartNo) >= v.chunks {
			continue
		}
		if q.From != d.host.ID() {
			// After a broadcast Data the request names the distributor,
			// not the node (Q-19 h): no progress to learn from it.
			d.pace.refund(now, d.stockLink.asked(now, q.From, int(q.PartNo)))
			if p, changed := c.stockAsked(now, q.From, int(q.PartNo), v); changed {
				d.emit(c, q.From, p)
			}
		}
		r := reply{c: c, to: q.From, idx: int(q.PartNo), routing: protocol.RouteSingle, stock: true, req: q, v: v}
		if q.Broadcasted {
			r.routing = protocol.RouteBroadcast
		}
		if d.cfg.Unpaced {
			d.sendReply(now, r)
		} else {
			d.enqueue(r)
		}
		return
	}
	d.stats.IgnoredRequests++
}

func (d *Distributor) enqueue(r reply) {
	for _, q := range d.queue {
		if q.c == r.c && q.to == r.to && q.idx == r.idx && q.stock == r.stock && q.routing == r.routing {
			return
		}
	}
	d.queue = append(d.queue, r)
}

func (d *Distributor) onNeed(now time.Time, h protocol.Header, raw []byte) {
	n, err := DecodeNeed(raw)
	if err != nil {
		return
	}
	c := d.find(n.ID)
	if c != nil && c.State == CampaignRunning && !c.Targeted(n.From) {
		if n.Parts == "" && c.Mode != ModeStock {
			// It saw chunks of the transfer and lost every offer: the
			// offer's node list tells it the transfer is not for it.
			d.offerTo(now, c.offers[0], n.From)
			return
		}
		d.stats.IgnoredRequests++
		return
	}
	if c == nil || c.State != CampaignRunning || c.Mode == ModeStock {
		if h.Routing == protocol.RouteNeighbour {
			_ = d.host.SendPackage(now, &Refuse{From: d.host.ID(), Dest: n.From, Routing: int(protocol.RouteNeighbour), ID: n.ID})
		}
		return
	}
	if n.Parts == "" {
		// A receiver saw chunks of this transfer but lost the offer.
		o := c.offer
		if len(c.Targets.Nodes) > 0 {
			o.Nodes = []uint32{n.From}
		}
		d.offerTo(now, o, n.From)
		return
	}
	parts, err := ParseRanges(n.Parts, c.fast.chunks, c.fast.chunks)
	if err != nil {
		return
	}
	if p, changed := c.asked(now, n.From, c.fast); changed {
		c.lost.watch(now, d.cfg.LostAfter)
		d.emit(c, n.From, p)
	}
	d.accepted(now, c)
	routing := protocol.RouteSingle
	if h.Routing == protocol.RouteNeighbour {
		routing = protocol.RouteNeighbour
	}
	for _, i := range parts {
		if c.Mode == ModeBroadcast && c.push.over && routing == protocol.RouteSingle && d.rebroadcast(c, n.From, i) {
			continue
		}
		d.enqueue(reply{c: c, to: n.From, idx: i, routing: routing, v: c.fast})
	}
}

// offerTo sends offer o to one receiver (routing 1).
func (d *Distributor) offerTo(now time.Time, o Offer, dest uint32) {
	o.Routing = int(protocol.RouteSingle)
	_ = d.host.SendPackage(now, &offerTo{Offer: o, dest: dest})
}

func (d *Distributor) sendReply(now time.Time, r reply) int {
	c := r.c
	data := r.v.chunk(r.idx)
	if r.stock {
		q := r.req
		m := &stockMsg{Type: protocol.TypeOTAData, From: d.host.ID(), Routing: int(r.routing), MD5: q.MD5,
			Hardware: q.Hardware, Role: q.Role, Forced: q.Forced, NoPart: q.NoPart, Broadcasted: q.Broadcasted,
			Compressed: q.Compressed, Dest: q.From, PartNo: q.PartNo, Data: base64.StdEncoding.EncodeToString(data)}
		b := m.AppendJSON(nil)
		_ = d.host.SendRaw(now, b)
		d.stats.StockServed++
		c.stockServed(now, q.From, r.idx, r.v)
		if r.idx == r.v.chunks-1 {
			c.lastPartAt = now
		}
		return len(b)
	}
	ch := &Chunk{From: d.host.ID(), Routing: int(r.routing), ID: c.ID, Index: r.idx, Data: encodePayload(c.offer.Encoding, data)}
	if r.routing != protocol.RouteBroadcast {
		ch.Dest = r.to
		d.stats.ChunksServed++
	} else {
		d.stats.ChunksPushed++
	}
	b := ch.AppendJSON(nil)
	_ = d.host.SendRaw(now, b)
	return len(b)
}

func (d *Distributor) onReport(now time.Time, raw []byte) {
	r, err := DecodeReport(raw)
	if err != nil {
		return
	}
	c := d.find(r.ID)
	if c == nil || !c.Targeted(r.From) {
		return
	}
	if !c.Active() && State(r.State) == StateDownloading {
		// The node took up a transfer that is over: from an offer that
		// came late, after a newer one, or it missed the end. Nothing
		// more comes for it, so it should drop it.
		_ = d.host.SendPackage(now, &Refuse{From: d.host.ID(), Dest: r.From, Routing: int(protocol.RouteSingle), ID: r.ID, Over: true})
	}
	if State(r.State) == StateDownloading {
		d.accepted(now, c)
	}
	if c.push.pushing && State(r.State) == StateDownloading {
		d.observe(c, r)
	}
	p, changed := c.update(now, r.From, r, c.fast)
	if c.State == CampaignRunning {
		c.lost.watch(now, d.cfg.LostAfter)
	}
	if changed {
		d.emit(c, r.From, p)
		if len(c.Targets.Queue) > 0 && (p.Terminal() || p.State == StateFailed) {
			d.admit(now, c)
		}
	}
	if c.settle(now) {
		d.finish(now, c, c.State, c.Reason)
		d.dropOldFinished()
	}
}
