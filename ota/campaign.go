package ota

import (
	"slices"
	"time"
)

// CampaignState is where a distribution stands.
type CampaignState string

// Campaign states.
const (
	CampaignRunning   CampaignState = "running"
	CampaignPaused    CampaignState = "paused"
	CampaignCompleted CampaignState = "completed"
	CampaignAborted   CampaignState = "aborted"
	CampaignFailed    CampaignState = "failed"
)

// Targets selects the receivers of a campaign: every node of Role and
// Hardware, or only the listed nodes among them.
type Targets struct {
	Role     string   `json:"role"`
	Hardware string   `json:"hardware"`
	Nodes    []uint32 `json:"nodes,omitempty"`
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

// NodeProgress is one receiver's progress as the distributor knows it
// (from Report packages; stock receivers do not report).
type NodeProgress struct {
	Node    uint32        `json:"node"`
	State   State         `json:"state"`
	Done    int           `json:"chunks_done"`
	Total   int           `json:"chunks_total"`
	Bytes   int64         `json:"bytes"`
	Rate    float64       `json:"rate_bps"`
	ETA     time.Duration `json:"eta"`
	Active  string        `json:"active,omitempty"`
	Err     string        `json:"error,omitempty"`
	Updated time.Time     `json:"updated_at"`
	Joined  time.Time     `json:"joined_at"`
}

// Terminal reports whether the node is done with this campaign.
func (p NodeProgress) Terminal() bool {
	return p.State == StateConfirmed || p.State == StateRolledBack
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
	Reason   string // why it was aborted or failed
	Started  time.Time
	Finished time.Time

	nodes map[uint32]*NodeProgress
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
		ID: c.ID, Image: c.Image, Mode: c.Mode, Method: c.Method, Targets: c.Targets, Forced: c.Forced,
		State: c.State, Reason: c.Reason, Started: c.Started, Finished: c.Finished, Nodes: c.Nodes(),
	}
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
		p := p
		c.nodes[p.Node] = &p
	}
	return c
}

// update applies a receiver report; it reports whether anything changed.
// chunks is the number of chunks of the campaign's transfer.
func (c *Campaign) update(now time.Time, from uint32, r *Report, chunks int) (NodeProgress, bool) {
	p, ok := c.nodes[from]
	if !ok {
		p = &NodeProgress{Node: from, Joined: now}
		c.nodes[from] = p
	}
	st := State(r.State)
	if st == StateConfirmed && r.Active != c.Image.MD5 {
		return *p, false // confirmed something else
	}
	done, total := r.Have, r.Total
	switch {
	case st == StateConfirmed:
		// The outcome report of a trial carries no chunk counts: a
		// confirmed node holds the whole transfer.
		done, total = chunks, chunks
	case st == StateRolledBack && r.Total == 0:
		// Keep the counts of the transfer the node last reported.
		done, total = p.Done, p.Total
	}
	changed := !ok || p.State != st || p.Done != done
	p.State, p.Done, p.Total, p.Active, p.Err, p.Updated = st, done, total, r.Active, r.Error, now
	if el := now.Sub(p.Joined).Seconds(); el > 0 && p.Total > 0 {
		p.Rate = float64(p.Done) / el
		if p.Rate > 0 {
			p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
		}
	}
	return *p, changed
}

// settle finishes the campaign once every listed target is terminal.
func (c *Campaign) settle(now time.Time) bool {
	if c.State != CampaignRunning || len(c.Targets.Nodes) == 0 {
		return false
	}
	failed := 0
	for _, id := range c.Targets.Nodes {
		p, ok := c.nodes[id]
		if !ok || !p.Terminal() {
			return false
		}
		if p.State != StateConfirmed {
			failed++
		}
	}
	c.State = CampaignCompleted
	if failed > 0 {
		c.State = CampaignFailed
		c.Reason = "some targets rolled back"
	}
	c.Finished = now
	return true
}
