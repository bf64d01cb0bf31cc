package ota

import (
	"fmt"
	"slices"
	"time"
)

// CampaignState is where a distribution stands.
type CampaignState string

// Campaign states. Running and paused campaigns are active; the others
// are final: a campaign that reached one never leaves it.
const (
	// CampaignRunning announces and serves the image.
	CampaignRunning CampaignState = "running"
	// CampaignPaused neither announces nor serves; receivers keep what
	// they hold.
	CampaignPaused CampaignState = "paused"
	// CampaignCompleted: every target confirmed the image.
	CampaignCompleted CampaignState = "completed"
	// CampaignFailed: every target reached a final state and some rolled
	// back or refused the image, or the campaign could not run (Reason
	// says which).
	CampaignFailed CampaignState = "failed"
	// CampaignAborted: stopped by an operator.
	CampaignAborted CampaignState = "aborted"
	// CampaignSuperseded: stopped before every target was through,
	// because a campaign for the same role and hardware started (Reason
	// names it).
	CampaignSuperseded CampaignState = "superseded"
)

// Targets selects the receivers of a campaign: every node of Role and
// Hardware, or only the listed nodes among them.
type Targets struct {
	Role     string   `json:"role"`
	Hardware string   `json:"hardware"`
	Nodes    []uint32 `json:"nodes,omitempty"`
	// Queue are nodes of the list still waiting for a place, at most
	// MaxConcurrent of the listed nodes being updated at a time (queue.go).
	Queue         []uint32 `json:"queue,omitempty"`
	MaxConcurrent int      `json:"max_concurrent,omitempty"`
}

// ImageInfo identifies the image a campaign installs.
type ImageInfo struct {
	MD5       string `json:"md5"`
	Role      string `json:"role"`
	Hardware  string `json:"hardware"`
	Version   string `json:"version,omitempty"`
	Size      int64  `json:"size"`
	Signature []byte `json:"signature,omitempty"`
}

// NodeProgress is one receiver's progress as the distributor knows it:
// from Report packages, or for stock receivers, which never report, from
// their DataRequests (Estimated). Bytes count the
// transfer (the compressed image when the campaign compresses), as they
// cross the mesh; chunks are counted separately.
type NodeProgress struct {
	Node       uint32        `json:"node"`
	State      State         `json:"state"`
	Done       int           `json:"chunks_done"`
	Total      int           `json:"chunks_total"`
	Bytes      int64         `json:"bytes"`       // transfer bytes the node holds
	BytesTotal int64         `json:"bytes_total"` // transfer bytes in all
	Rate       float64       `json:"rate_bps"`    // bytes per second since the campaign (or the node's transfer) started
	ETA        time.Duration `json:"eta"`
	Active     string        `json:"active,omitempty"`
	Err        string        `json:"error,omitempty"`
	Updated    time.Time     `json:"updated_at"`
	Joined     time.Time     `json:"joined_at"`
	// Estimated: inferred from a stock receiver's requests (the chunk it
	// asks for is the count it holds; installed once it was served the
	// last chunk and went quiet or rebooted), not reported by the node.
	Estimated bool `json:"estimated,omitempty"`

	// The rate counts the bytes above rateBase that came since rateFrom:
	// the campaign's start, or when the node started the transfer over.
	rateFrom time.Time
	rateBase int64
	stock    stockSeen
}

// Terminal reports whether the node is done with this campaign: it
// confirmed the image, rolled back, or refused it (a refusal is final for
// the image; a failed verification is retried, so failed is not).
func (p NodeProgress) Terminal() bool {
	return p.State == StateConfirmed || p.State == StateRolledBack || p.State == StateRefused ||
		p.State == StateInstalled || p.State == StateLost
}

// Campaign is one distribution with its state and per-node progress.
// Progressive rollout and MQTT control drive it through Distributor's
// Pause, Resume, Abort and Start.
type Campaign struct {
	ID       string
	Image    ImageInfo
	Mode     Mode
	Method   string
	Targets  Targets
	Forced   bool
	State    CampaignState
	Reason   string // why it failed, was aborted or superseded
	Started  time.Time
	Finished time.Time

	nodes map[uint32]*NodeProgress
	final int // nodes in a final state (NodeProgress.Terminal)
	// A campaign for a role ends once every node that took part is final
	// and none joined or changed for quiet; settleAt is then set.
	quiet    time.Duration
	settleAt time.Time
	// stockNext is when the stock receivers' progress is next checked
	// (campaign_stock.go).
	stockNext time.Time
	// rebootWatch: the nodes a stock-turbo campaign watches for the
	// reboot that shows a good image (campaign_turbo.go).
	rebootWatch rebootWatch
}

// Nodes returns the per-node progress, ordered by node id.
func (c *Campaign) Nodes() []NodeProgress {
	out := make([]NodeProgress, 0, len(c.nodes))
	for _, p := range c.nodes {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b NodeProgress) int { return int(int64(a.Node) - int64(b.Node)) })
	return out
}

// Node returns one node's progress.
func (c *Campaign) Node(id uint32) (NodeProgress, bool) {
	p, ok := c.nodes[id]
	if !ok {
		return NodeProgress{}, false
	}
	return *p, true
}

// Count returns how many known nodes are in state s.
func (c *Campaign) Count(s State) int {
	n := 0
	for _, p := range c.nodes {
		if p.State == s {
			n++
		}
	}
	return n
}

// Targeted reports whether node id is a target of the campaign.
func (c *Campaign) Targeted(id uint32) bool {
	return len(c.Targets.Nodes) == 0 || slices.Contains(c.Targets.Nodes, id)
}

// Active reports whether the campaign still runs (running or paused).
func (c *Campaign) Active() bool {
	return c.State == CampaignRunning || c.State == CampaignPaused
}

// put sets a node's progress, keeping the count of final nodes.
func (c *Campaign) put(p *NodeProgress) {
	if old, ok := c.nodes[p.Node]; ok && old.Terminal() {
		c.final--
	}
	if p.Terminal() {
		c.final++
	}
	c.nodes[p.Node] = p
}

// CampaignSnapshot is the persistent form of a Campaign.
type CampaignSnapshot struct {
	ID       string         `json:"id"`
	Image    ImageInfo      `json:"image"`
	Mode     Mode           `json:"mode"`
	Method   string         `json:"method"`
	Targets  Targets        `json:"targets"`
	Forced   bool           `json:"forced,omitempty"`
	State    CampaignState  `json:"state"`
	Reason   string         `json:"reason,omitempty"`
	Started  time.Time      `json:"started_at"`
	Finished time.Time      `json:"finished_at,omitzero"`
	Nodes    []NodeProgress `json:"nodes"`
}

// Snapshot returns the campaign's persistent form.
func (c *Campaign) Snapshot() CampaignSnapshot {
	return CampaignSnapshot{
		ID: c.ID, Image: c.Image, Mode: c.Mode, Method: c.Method, Targets: c.Targets.clone(), Forced: c.Forced,
		State: c.State, Reason: c.Reason, Started: c.Started, Finished: c.Finished, Nodes: c.Nodes(),
	}
}

// clone copies t's lists, which a queued campaign changes as it goes.
func (t Targets) clone() Targets {
	t.Nodes, t.Queue = slices.Clone(t.Nodes), slices.Clone(t.Queue)
	return t
}

// RestoreCampaign rebuilds a campaign object from a snapshot, for listing
// after a restart. To run it again, Start a campaign with the snapshot's
// id, image and mode: receivers resume from the chunks they staged.
func RestoreCampaign(s CampaignSnapshot) *Campaign {
	c := &Campaign{
		ID: s.ID, Image: s.Image, Mode: s.Mode, Method: s.Method, Targets: s.Targets, Forced: s.Forced,
		State: s.State, Reason: s.Reason, Started: s.Started, Finished: s.Finished,
		nodes: map[uint32]*NodeProgress{},
	}
	for _, p := range s.Nodes {
		p.rateFrom, p.rateBase = s.Started, 0
		c.put(&p)
	}
	return c
}

// update applies a receiver report; it reports whether anything changed.
// v is the campaign's transfer.
func (c *Campaign) update(now time.Time, from uint32, r *Report, v *variant) (NodeProgress, bool) {
	p, ok := c.nodes[from]
	st := State(r.State)
	unheard := !ok || !p.Terminal() || p.State == StateLost
	late := unheard && st == StateConfirmed && r.Active == c.Image.MD5 ||
		ok && p.State == StateLost && (st == StateRolledBack || st == StateRefused)
	if !c.Active() && !late {
		// Final states never change, nor the record they rest on. A node
		// not through that gives its outcome after the end is the
		// exception: reports travel unacknowledged, so its earlier ones
		// may have been lost while the campaign was open, and the record
		// must say what the node runs. Lost is the campaign's verdict on
		// a silence, not the node's word, so the node's own outcome
		// replaces it.
		if ok {
			return *p, false
		}
		return NodeProgress{Node: from}, false
	}
	if !ok {
		p = &NodeProgress{Node: from, Joined: now}
	}
	if st == StateConfirmed && r.Active != c.Image.MD5 {
		return *p, false // confirmed something else
	}
	done, total := r.Have, r.Total
	switch {
	case st == StateConfirmed:
		// The outcome report of a trial carries no chunk counts: a
		// confirmed node holds the whole transfer.
		done, total = v.chunks, v.chunks
	case st == StateRolledBack && r.Total == 0:
		// Keep the counts of the transfer the node last reported.
		done, total = p.Done, p.Total
	}
	changed := !ok || p.State != st || p.Done != done
	next := *p
	next.State, next.Done, next.Total, next.Active, next.Err, next.Updated = st, done, total, r.Active, r.Error, now
	next.Estimated, next.stock = false, stockSeen{} // the node's own word
	next.BytesTotal = v.size
	next.Bytes = v.bytesOf(done)
	switch {
	case !ok && next.Terminal():
		// Nothing to time: a node that ran the image already reports
		// confirmed as its first word, like one that just installed it.
		next.rateFrom, next.rateBase = now, next.Bytes
	case !ok:
		// A pushed transfer arrives from the start; a node reports after
		// its first chunks.
		next.rateFrom, next.rateBase = c.Started, 0
	case next.Bytes < p.Bytes:
		// It started over (it lost what it held, or this is a new run of
		// the campaign): the rate counts from here.
		next.rateFrom, next.rateBase, next.Rate = now, next.Bytes, 0
	}
	if next.Bytes != p.Bytes || !ok {
		if el := now.Sub(next.rateFrom).Seconds(); el > 0 {
			next.Rate = float64(next.Bytes-next.rateBase) / el
		}
	}
	next.ETA = 0
	if next.Rate > 0 && !next.Terminal() {
		next.ETA = time.Duration(float64(next.BytesTotal-next.Bytes) / next.Rate * float64(time.Second))
	}
	c.put(&next)
	if changed {
		c.noteChange(now)
	}
	return next, changed
}

// asked records that node from asked the distributor for chunks of
// transfer v. Reports travel unacknowledged and may all be lost; a node
// with no record (or called lost) that asks for chunks is downloading,
// and a campaign for a role then waits for its outcome instead of ending
// without it. A node on record keeps its own word, but a request is news
// of it: one still downloading is not silent (lost) while it asks.
func (c *Campaign) asked(now time.Time, from uint32, v *variant) (NodeProgress, bool) {
	p, ok := c.nodes[from]
	if !c.Active() {
		return NodeProgress{}, false
	}
	if ok && p.State != StateLost {
		if !p.Terminal() {
			p.Updated = later(p.Updated, now)
		}
		return NodeProgress{}, false
	}
	next := NodeProgress{Node: from, Total: v.chunks, BytesTotal: v.size, Joined: now, rateFrom: c.Started}
	if ok {
		next = *p // the counts it last reported
	}
	next.State, next.Err, next.Updated, next.Rate, next.ETA = StateDownloading, "", now, 0, 0
	c.put(&next)
	c.noteChange(now)
	return next, true
}

// noteChange schedules the end of a campaign for a role when every node
// that took part is final, and cancels it when one is not.
func (c *Campaign) noteChange(now time.Time) {
	c.settleAt = time.Time{}
	if len(c.Targets.Nodes) == 0 && len(c.nodes) > 0 && c.final == len(c.nodes) {
		c.settleAt = now.Add(c.quiet)
	}
}

// through reports whether every target reached a final state: every
// listed node, or for a role every node that took part (at least one).
func (c *Campaign) through() bool {
	if len(c.Targets.Queue) > 0 {
		return false
	}
	if len(c.Targets.Nodes) == 0 {
		return len(c.nodes) > 0 && c.final == len(c.nodes)
	}
	for _, id := range c.Targets.Nodes {
		p, ok := c.nodes[id]
		if !ok || !p.Terminal() {
			return false
		}
	}
	return true
}

// settle finishes a running campaign once it is through: a node list at
// once, a role after the quiet period.
func (c *Campaign) settle(now time.Time) bool {
	if c.State != CampaignRunning {
		return false
	}
	if len(c.Targets.Nodes) == 0 && (c.settleAt.IsZero() || now.Before(c.settleAt)) {
		return false
	}
	return c.conclude(now)
}

// conclude gives a campaign whose targets are all through its final state
// from their outcomes; false if some target is not through.
func (c *Campaign) conclude(now time.Time) bool {
	if !c.through() {
		return false
	}
	refused, rolledBack, lost, all := 0, 0, 0, 0
	for _, p := range c.nodes {
		if !c.Targeted(p.Node) {
			continue
		}
		all++
		switch p.State {
		case StateRefused:
			refused++
		case StateRolledBack:
			rolledBack++
		case StateLost:
			lost++
		}
	}
	c.State, c.Reason = CampaignCompleted, ""
	switch {
	case refused > 0 && rolledBack > 0:
		c.State, c.Reason = CampaignFailed, fmt.Sprintf("%d of %d nodes refused the image, %d rolled back", refused, all, rolledBack)
	case refused > 0:
		c.State, c.Reason = CampaignFailed, fmt.Sprintf("%d of %d nodes refused the image", refused, all)
	case rolledBack > 0:
		c.State, c.Reason = CampaignFailed, fmt.Sprintf("%d of %d nodes rolled back", rolledBack, all)
	}
	switch {
	case lost > 0 && c.State == CampaignFailed:
		c.Reason += fmt.Sprintf(", %d lost", lost)
	case lost > 0:
		c.State, c.Reason = CampaignFailed, fmt.Sprintf("%d of %d nodes lost", lost, all)
	}
	c.Finished, c.settleAt = now, time.Time{}
	return true
}
