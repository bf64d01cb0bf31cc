package ota

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// pushControl is a broadcast campaign's push: which chunk goes next and
// when, and which chunks so many nodes asked the distributor for after the
// push that pushing them once more is cheaper. The spacing starts at the
// airtime model of the busiest radio of the tree and follows the links
// as stock-turbo's does (linkRate: faster while probes to the deepest
// node come back quicker than the model's radios could carry them), and
// AIMD on the loss the receivers report (PROTOCOL.md, 723 Report, rate
// control) lowers it.
type pushControl struct {
	// awaiting: the push starts once a receiver accepted the offer.
	awaiting bool
	pushing  bool      // the push is on
	next     int       // the next chunk to push
	nextAt   time.Time // when it may go
	over     bool      // every chunk was pushed and End sent
	// rate multiplies the estimated capacity of the busiest radio: 1 is
	// the estimate (the ceiling on the model's radios), lower after
	// congestion.
	rate float64
	// link multiplies rate by how much faster than the model the links
	// are shown to be (1 on the model's radios).
	link    linkRate
	lastLen int // the last pushed chunk's bytes
	// askedBy maps a chunk to the nodes that asked the distributor for
	// it once the push was over.
	askedBy map[int]map[uint32]bool
	window  lossWindow
	// lastReport is each node's report the previous loss sample came from.
	lastReport map[uint32]Report
}

// lossWindow sums the loss reported over one control interval.
type lossWindow struct {
	until     time.Time
	lostHop   float64 // Σ per-hop loss × samples
	samples   float64
	congested int
	reporters int
}

// controlInterval is how often the push rate is adjusted.
const controlInterval = 3 * time.Second

func newPushControl() pushControl {
	return pushControl{rate: 1, askedBy: map[int]map[uint32]bool{}, lastReport: map[uint32]Report{}}
}

// release drops the push's records: the campaign ended.
func (p *pushControl) release() {
	p.pushing = false
	p.askedBy, p.lastReport = nil, nil
}

// gap is the time between pushed chunks of encoded size msg that keeps
// the busiest radio (the node with the most children sends every chunk
// once per child) at utilization × rate of its airtime, on links the
// probes showed that many times faster than the model.
func (p *pushControl) gap(radio Radio, utilization float64, msg, busiest int) time.Duration {
	per := time.Duration(busiest) * radio.airtime(msg)
	return time.Duration(float64(per) / (utilization * p.rate * p.link.factor()))
}

// observe feeds a receiver's report into the rate control: the pushed
// chunks it found missing since its last report, per hop of its depth
// (hops, asked only when the report has a sample).
func (p *pushControl) observe(r *Report, hops func() int, lossTarget float64) {
	prev := p.lastReport[r.From]
	p.lastReport[r.From] = *r
	dHi, dLost := r.High-prev.High, r.Lost-prev.Lost
	if dHi <= 0 || dLost < 0 {
		return
	}
	f := min(float64(dLost)/float64(dHi), 1)
	perHop := 1 - math.Pow(1-f, 1/float64(max(hops(), 1)))
	p.window.lostHop += perHop * float64(dHi)
	p.window.samples += float64(dHi)
	p.window.reporters++
	if perHop > 2*lossTarget && dLost >= minCongestedLost {
		p.window.congested++
		// A queue overflows somewhere: the links' speed-up halves at the
		// next probe, not a control window later.
		p.link.loss()
	}
}

// minCongestedLost is the fewest lost chunks that let one report count as
// congested: early reports cover a few pushed chunks, where one or two
// random losses already look like 6 % per hop, and a tenth of the
// reporters seeing that by chance would slow a healthy push.
const minCongestedLost = 3

// adjust closes a control window when it is due: AIMD on the per-hop loss
// the receivers reported. Random loss below lossTarget is repaired hop by
// hop and does not slow the push; loss above it means a radio queue
// overflows. It reports the window's loss and whether the rate changed.
func (p *pushControl) adjust(now time.Time, lossTarget float64) (loss float64, changed, closed bool) {
	if p.window.until.IsZero() {
		p.window.until = now.Add(controlInterval)
		return 0, false, false
	}
	if now.Before(p.window.until) {
		return 0, false, false
	}
	w := p.window
	p.window = lossWindow{until: now.Add(controlInterval)}
	if w.samples == 0 {
		return 0, false, false
	}
	loss = w.lostHop / w.samples
	old := p.rate
	if loss > lossTarget || w.congested*10 > w.reporters {
		p.rate = max(p.rate*0.75, 0.25)
		p.link.loss() // and the links' speed-up halves at the next probe
	} else {
		p.rate = min(p.rate+0.05, 1) // the estimate is the ceiling: above it queues overflow
	}
	return loss, p.rate != old, true
}

// askedAfterPush records that node asked the distributor for chunk i
// after the push and reports whether enough distinct nodes did (an
// eighth of those known, at least four) to push it once more.
func (p *pushControl) askedAfterPush(node uint32, i, nodes int) bool {
	m := p.askedBy[i]
	if m == nil {
		m = map[uint32]bool{}
		p.askedBy[i] = m
	}
	m[node] = true
	if len(m) < max(4, nodes/8) {
		return false
	}
	delete(p.askedBy, i)
	return true
}

// push sends the campaign's next chunk (or End) when its time came and
// the radio has room.
func (d *Distributor) push(now time.Time, c *dcampaign) {
	p := &c.push
	d.probePush(now, p)
	if !p.pushing || now.Before(p.nextAt) || !d.pace.ready(now) {
		return
	}
	own, busiest, _ := d.fanout()
	if own == 0 {
		p.nextAt = now.Add(time.Second) // nobody to push to yet
		return
	}
	if loss, changed, closed := p.adjust(now, d.cfg.LossTarget); closed {
		if changed {
			d.stats.RateChanges++
		}
		d.cfg.Logger.Debug("ota push rate", "campaign", c.ID, "loss_per_hop", loss, "rate", p.rate)
	}
	if p.next >= c.fast.chunks {
		e := &End{From: d.host.ID(), Routing: int(protocol.RouteBroadcast), ID: c.ID, Sent: c.fast.chunks}
		_ = d.host.SendPackage(now, e)
		d.pace.busy(now, 80, own)
		p.pushing, p.over = false, true
		return
	}
	n := d.sendReply(now, reply{c: c, idx: p.next, routing: protocol.RouteBroadcast, v: c.fast})
	d.pace.charge(now, p.link.cost(d.cfg.Radio, n, own))
	p.lastLen = n
	p.nextAt = now
	d.probePush(now, p)
	p.next++
	// Spacing counts from the actual send: catching up after a delay
	// would bunch chunks, and bunched chunks overflow relay queues.
	p.nextAt = p.nextAt.Add(p.gap(d.cfg.Radio, d.cfg.Utilization, Dense.EncodedLen(c.fast.chunkSize)+80, busiest))
}

// probePush sends the push's link probe when due. The push keeps the
// busiest radio 98 % busy, and a probe to the deepest node may cross that
// radio there and back: the next chunk leaves it that airtime (at the
// links' speed).
func (d *Distributor) probePush(now time.Time, p *pushControl) {
	if d.probeLinks(now, &p.link, p.probing()) {
		p.nextAt = later(p.nextAt, now).Add(p.link.cost(d.cfg.Radio, linkProbeLen, 2))
	}
}

// observe feeds receiver r's report into c's push rate control.
func (d *Distributor) observe(c *dcampaign, r *Report) {
	c.push.observe(r, func() int {
		_, _, depth := d.fanout()
		return depth[r.From]
	}, d.cfg.LossTarget)
}

// rebroadcast records that node missed chunk i; once enough distinct
// nodes asked the distributor itself for it, pushing it once more over the
// whole mesh is cheaper than unicasting it to each.
func (d *Distributor) rebroadcast(c *dcampaign, node uint32, i int) bool {
	if !c.push.askedAfterPush(node, i, len(c.nodes)) {
		return false
	}
	d.queue = slices.DeleteFunc(d.queue, func(r reply) bool {
		return r.c == c && r.idx == i && !r.stock && r.routing == protocol.RouteSingle
	})
	d.enqueue(reply{c: c, idx: i, routing: protocol.RouteBroadcast, v: c.fast})
	d.stats.Rebroadcasts++
	return true
}
func (d *Distributor) autoChunkSize() int {
	_, busiest, _ := d.fanout()
	busiest = max(busiest, 1)
	cs := 8192
	for cs > 512 && (busiest*(Dense.EncodedLen(cs)+80) > d.cfg.QueueBudget || maxChunkPackage(cs, EncDense) > d.cfg.MaxPackageSize) {
		cs /= 2
	}
	return cs
}

// accepted starts c's push when it waits for a receiver: one accepted the
// offer (it reports downloading, or asks for chunks).
func (d *Distributor) accepted(now time.Time, c *dcampaign) {
	if !c.push.awaiting || c.State != CampaignRunning {
		return
	}
	c.push.awaiting, c.push.pushing = false, true
	c.push.nextAt = now
	if first := c.Started.Add(d.cfg.PushDelay); first.After(now) {
		c.push.nextAt = first
	}
}

// fanout returns how many connections a broadcast from here leaves on, the
// largest number of children of any node in the tree, and node depths.
func (d *Distributor) fanout() (own, busiest int, depth map[uint32]int) {
	tree := d.host.Tree()
	depth = map[uint32]int{}
	own = len(tree.Subs)
	busiest = own
	var walk func(t *protocol.NodeTree, dep int)
	walk = func(t *protocol.NodeTree, dep int) {
		depth[t.NodeID] = dep
		busiest = max(busiest, len(t.Subs))
		for i := range t.Subs {
			walk(&t.Subs[i], dep+1)
		}
	}
	for i := range tree.Subs {
		walk(&tree.Subs[i], 1)
	}
	return own, busiest, depth
}

// maxChunkPackage is the encoded size of the largest chunk package (722)
// of chunk size cs in encoding enc: the longest campaign id, node ids and
// index.
func maxChunkPackage(cs int, enc string) int {
	n := base64.StdEncoding.EncodedLen(cs)
	if enc == EncDense {
		n = Dense.EncodedLen(cs)
	}
	ch := Chunk{From: math.MaxUint32, Dest: math.MaxUint32, Routing: int(protocol.RouteSingle),
		ID: strings.Repeat("x", 32), Index: math.MaxInt32, Data: strings.Repeat("A", n)}
	return len(ch.AppendJSON(nil))
}

// checkPackageSize refuses a campaign whose chunks would not fit
// MaxPackageSize: the fast modes' chunk (cs, enc) and the stock Data.
func (d *Distributor) checkPackageSize(id string, img Image, cs int, enc string, stockCS int) error {
	limit := d.cfg.MaxPackageSize
	if n := maxChunkPackage(cs, enc); enc == EncDense && n > limit {
		return fmt.Errorf("ota: campaign %s: chunk size %d makes chunk packages of up to %d bytes, above the package limit of %d", id, cs, n, limit)
	}
	data := &stockMsg{Type: protocol.TypeOTAData, From: math.MaxUint32, Routing: int(protocol.RouteBroadcast), MD5: img.MD5,
		Hardware: img.Hardware, Role: img.Role, Forced: true, NoPart: math.MaxUint32, Broadcasted: true, Compressed: true,
		Dest: math.MaxUint32, PartNo: math.MaxUint32, Data: strings.Repeat("A", base64.StdEncoding.EncodedLen(stockCS))}
	if n := len(data.AppendJSON(nil)); n > limit {
		return fmt.Errorf("ota: campaign %s: stock chunk size %d makes Data packages of up to %d bytes, above the package limit of %d", id, stockCS, n, limit)
	}
	return nil
}
