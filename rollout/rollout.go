package rollout

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Rollout is one progressive rollout. Create it with New (or Restore),
// feed it inputs, and after each input take Ready and call Advance.
type Rollout struct {
	s     snapshot
	ready Ready
	// derived from s.Topology, rebuilt when it changes
	children map[uint32][]uint32
}

// node is one node's record in a rollout.
type node struct {
	ID     uint32    `json:"id"`
	Wave   int       `json:"wave"`
	State  NodeState `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	Online bool      `json:"online"`
	// PrevMD5 and PrevVersion are the image it ran before: what a
	// rollback installs again.
	PrevMD5     string `json:"prev_md5,omitempty"`
	PrevVersion string `json:"prev_version,omitempty"`
	// Updated: it confirmed the new image (it may have rolled back since).
	Updated bool `json:"updated,omitempty"`
	// Failed: it counts against the failure threshold.
	Failed    bool      `json:"failed,omitempty"`
	Confirmed time.Time `json:"confirmed_at,omitzero"`
	Base      baseline  `json:"baseline,omitzero"`
	Watch     watch     `json:"watch,omitzero"`
}

// baseline is a node's telemetry before its update.
type baseline struct {
	Samples  int       `json:"samples,omitempty"`
	Free     float64   `json:"free,omitempty"`      // mean of the last few readings
	DropRate float64   `json:"drop_rate,omitempty"` // messages per minute
	Critical int       `json:"critical,omitempty"`
	Rates    int       `json:"rates,omitempty"` // readings in DropRate
	Drops    dropMeter `json:"drops,omitzero"`
}

// watch is what the soak has seen of a node since its confirm.
type watch struct {
	Reboots      int           `json:"reboots,omitempty"`
	LastUptime   time.Duration `json:"last_uptime,omitempty"`
	OfflineSince time.Time     `json:"offline_since,omitzero"`
	Drops        dropMeter     `json:"drops,omitzero"`
}

// dropMeter turns a node's drop counter into a rate.
type dropMeter struct {
	At    time.Time `json:"at,omitzero"`
	Count uint64    `json:"count,omitempty"`
}

// rate is the drops per minute since the last reading (−1: none yet).
func (m *dropMeter) rate(now time.Time, count uint64) float64 {
	prev, at := m.Count, m.At
	m.At, m.Count = now, count
	if at.IsZero() || !now.After(at) || count < prev {
		return -1 // first reading, or the counter restarted with a reboot
	}
	return float64(count-prev) / now.Sub(at).Minutes()
}

// snapshot is a rollout's whole state, as persisted.
type snapshot struct {
	Spec     Spec      `json:"spec"`
	State    State     `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Created  time.Time `json:"created_at"`
	Finished time.Time `json:"finished_at,omitzero"`
	// Wave is the current wave; Sizes what the plan made of the targets.
	Wave      int       `json:"wave"`
	Sizes     []int     `json:"sizes"`
	WaveSince time.Time `json:"wave_since"`
	// PlanDone is when the last wave passed (Linger counts from there).
	PlanDone time.Time `json:"plan_done,omitzero"`
	// NextWave: the pause between waves is over on Resume.
	NextWave bool `json:"next_wave,omitempty"`
	// Then is the final state a stopping rollout ends in.
	Then       State            `json:"then,omitempty"`
	WindowShut bool             `json:"window_shut,omitempty"`
	Topology   Topology         `json:"topology"`
	Nodes      map[uint32]*node `json:"nodes"`
}

// New starts a rollout of spec over the nodes the caller knows. The spec is
// validated (its defaults filled in); nodes that are not targets are left
// out, nodes already on the image and refused downgrades are recorded as
// skipped, and the rest are split into waves, leaves first.
func New(now time.Time, spec Spec, nodes []NodeInfo, topo Topology) (*Rollout, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	r := &Rollout{s: snapshot{Spec: spec, State: StateRunning, Created: now, WaveSince: now, Nodes: map[uint32]*node{}}}
	r.setTopology(topo)
	var eligible []uint32
	for _, info := range nodes {
		if _, dup := r.s.Nodes[info.ID]; dup || !r.targets(info) {
			continue
		}
		n := &node{ID: info.ID, State: NodePending, Since: now, Online: info.Online, PrevMD5: strings.ToLower(info.MD5), PrevVersion: info.Version}
		r.s.Nodes[info.ID] = n
		if why := r.ineligible(info); why != "" {
			n.State, n.Reason = NodeSkipped, why
			continue
		}
		eligible = append(eligible, info.ID)
	}
	r.order(eligible)
	// Nodes away at the start go last: a canary must be a canary.
	slices.SortStableFunc(eligible, func(a, b uint32) int {
		return cmp.Compare(boolInt(!r.s.Nodes[a].Online), boolInt(!r.s.Nodes[b].Online))
	})
	r.s.Sizes = spec.Plan.sizes(len(eligible))
	i := 0
	for w, size := range r.s.Sizes {
		for _, id := range eligible[i : i+size] {
			r.s.Nodes[id].Wave = w
		}
		i += size
	}
	r.event(now, Event{Kind: EventState, To: string(StateRunning), Reason: fmt.Sprintf("%d nodes in %d waves, %d skipped", len(eligible), len(r.s.Sizes), len(r.s.Nodes)-len(eligible))})
	for _, id := range r.sortedIDs() {
		if n := r.s.Nodes[id]; n.State == NodeSkipped {
			r.event(now, Event{Kind: EventNode, Node: id, To: string(NodeSkipped), Reason: n.Reason})
		}
	}
	r.event(now, Event{Kind: EventWaveStarted, Wave: 0, Reason: fmt.Sprintf("%d nodes", firstOr(r.s.Sizes))})
	r.step(now)
	return r, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func firstOr(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[0]
}

// ID is the rollout's id.
func (r *Rollout) ID() string { return r.s.Spec.ID }

// State is the rollout's state and why it is there.
func (r *Rollout) State() (State, string) { return r.s.State, r.s.Reason }

// Spec is the rollout's spec with its defaults.
func (r *Rollout) Spec() Spec { return r.s.Spec }

// Wave is the current wave (0 the canary) of how many.
func (r *Rollout) Wave() (int, int) { return r.s.Wave, len(r.s.Sizes) }

// NodeStatus is one node's place in a rollout.
type NodeStatus struct {
	ID      uint32    `json:"id"`
	Wave    int       `json:"wave"`
	State   NodeState `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Updated bool      `json:"updated,omitempty"`
	Failed  bool      `json:"failed,omitempty"`
}

// Nodes is every node of the rollout, by id.
func (r *Rollout) Nodes() []NodeStatus {
	out := make([]NodeStatus, 0, len(r.s.Nodes))
	for _, id := range r.sortedIDs() {
		n := r.s.Nodes[id]
		out = append(out, NodeStatus{ID: id, Wave: n.Wave, State: n.State, Reason: n.Reason, Updated: n.Updated, Failed: n.Failed})
	}
	return out
}

// Count is how many nodes are in state s.
func (r *Rollout) Count(s NodeState) int {
	k := 0
	for _, n := range r.s.Nodes {
		if n.State == s {
			k++
		}
	}
	return k
}

// holds reports whether the rollout still has work to do on node id.
func (r *Rollout) holds(id uint32) bool {
	n, ok := r.s.Nodes[id]
	return ok && !r.s.State.Final() && !n.State.settled()
}

// targets reports whether info is one of the spec's targets.
func (r *Rollout) targets(info NodeInfo) bool {
	t := r.s.Spec.Targets
	if info.ID == r.s.Topology.Root && r.s.Topology.Root != 0 && !r.s.Spec.Plan.IncludeRoot {
		return false
	}
	if t.Role != "" && info.Role != t.Role || t.Hardware != "" && info.Hardware != t.Hardware {
		return false
	}
	if len(t.Nodes) > 0 {
		if _, ok := slices.BinarySearch(t.Nodes, info.ID); !ok {
			return false
		}
	}
	for _, tag := range t.Tags {
		if !slices.Contains(info.Tags, tag) {
			return false
		}
	}
	// The image's role and hardware bound every rollout: an image never
	// goes to a node it was not built for.
	img := r.s.Spec.Image
	return (info.Role == "" || info.Role == img.Role) && (info.Hardware == "" || info.Hardware == img.Hardware)
}

// ineligible says why a target is skipped ("" if it is not).
func (r *Rollout) ineligible(info NodeInfo) string {
	img := r.s.Spec.Image
	switch {
	case info.MD5 != "" && strings.EqualFold(info.MD5, img.MD5):
		return "up to date"
	case !r.s.Spec.Force && info.Version != "" && img.Version != "" && compareVersions(info.Version, img.Version) > 0:
		return fmt.Sprintf("runs %s, newer than %s: a downgrade needs force", info.Version, img.Version)
	}
	return ""
}

// setTopology takes a new mesh tree.
func (r *Rollout) setTopology(t Topology) {
	if t.Parent == nil {
		t.Parent = map[uint32]uint32{}
	}
	r.s.Topology = t
	r.children = map[uint32][]uint32{}
	for c, p := range t.Parent {
		r.children[p] = append(r.children[p], c)
	}
	for _, c := range r.children {
		slices.Sort(c)
	}
}

// ancestors is a node's path to the root, nearest first, without the root.
// A loop in a bad topology ends the walk.
func (r *Rollout) ancestors(id uint32) []uint32 {
	var out []uint32
	for cur, hops := id, 0; hops <= len(r.s.Topology.Parent); hops++ {
		p, ok := r.s.Topology.Parent[cur]
		if !ok || p == r.s.Topology.Root || p == id || slices.Contains(out, p) {
			break
		}
		out = append(out, p)
		cur = p
	}
	return out
}

func (r *Rollout) depth(id uint32) int { return len(r.ancestors(id)) }

// order sorts nodes leaves first, deepest first, taking the branches
// under the root in turn: a canary so comes from nodes nobody else reaches
// the mesh through, spread over the mesh rather than bunched under one
// relay.
func (r *Rollout) order(ids []uint32) {
	leaf := func(id uint32) int {
		if len(r.children[id]) == 0 {
			return 0
		}
		return 1
	}
	branch := func(id uint32) uint32 {
		if anc := r.ancestors(id); len(anc) > 0 {
			return anc[len(anc)-1]
		}
		return id
	}
	slices.SortFunc(ids, func(a, b uint32) int {
		return cmp.Or(cmp.Compare(leaf(a), leaf(b)), cmp.Compare(r.depth(b), r.depth(a)), cmp.Compare(a, b))
	})
	// The k-th leaf (relay) of each branch before the k+1-th of any.
	rank := map[uint32]int{}
	seen := map[[2]uint32]int{}
	for _, id := range ids {
		k := [2]uint32{uint32(leaf(id)), branch(id)}
		rank[id] = seen[k]
		seen[k]++
	}
	slices.SortStableFunc(ids, func(a, b uint32) int {
		return cmp.Or(cmp.Compare(leaf(a), leaf(b)), cmp.Compare(rank[a], rank[b]))
	})
}

func (r *Rollout) sortedIDs() []uint32 { return slices.Sorted(maps.Keys(r.s.Nodes)) }

func (r *Rollout) event(now time.Time, e Event) {
	e.At, e.Rollout = now, r.s.Spec.ID
	if e.Kind != EventWaveStarted && e.Kind != EventWavePassed {
		e.Wave = r.s.Wave
	}
	r.ready.Events = append(r.ready.Events, e)
}

func (r *Rollout) setState(now time.Time, s State, why string) {
	if r.s.State == s && r.s.Reason == why {
		return
	}
	r.event(now, Event{Kind: EventState, From: string(r.s.State), To: string(s), Reason: why})
	r.s.State, r.s.Reason = s, why
	if s.Final() {
		r.s.Finished = now
	}
}

func (r *Rollout) setNode(now time.Time, n *node, s NodeState, why string) {
	r.event(now, Event{Kind: EventNode, Node: n.ID, From: string(n.State), To: string(s), Reason: why})
	if n.Wave != r.s.Wave {
		r.ready.Events[len(r.ready.Events)-1].Wave = n.Wave
	}
	n.State, n.Reason, n.Since = s, why, now
}

// Ready is what the caller must do and publish since the last Advance.
func (r *Rollout) Ready() Ready { return r.ready }

// Advance says the caller took the last Ready.
func (r *Rollout) Advance() { r.ready = Ready{} }

// ErrState reports a command the rollout's state does not allow.
var ErrState = errors.New("rollout: not allowed in this state")

// Pause stops starting new updates; updates under way finish and are judged.
func (r *Rollout) Pause(now time.Time) error {
	switch r.s.State {
	case StateRunning, StateAwaitingApproval, StateWaiting:
		if r.s.State == StateAwaitingApproval {
			r.s.NextWave = true
		}
		r.setState(now, StatePaused, "paused by an operator")
		return nil
	case StatePaused:
		return nil
	}
	return fmt.Errorf("%w: pause a %s rollout", ErrState, r.s.State)
}

// Resume goes on after a pause (into the next wave if the pause was
// between waves).
func (r *Rollout) Resume(now time.Time) error {
	if r.s.State != StatePaused {
		return fmt.Errorf("%w: resume a %s rollout (only a paused one resumes)", ErrState, r.s.State)
	}
	r.setState(now, StateRunning, "resumed by an operator")
	if r.s.NextWave {
		r.s.NextWave = false
		r.startWave(now, r.s.Wave+1)
	}
	r.step(now)
	return nil
}

// Approve starts the next wave of a rollout awaiting approval.
func (r *Rollout) Approve(now time.Time) error {
	if r.s.State != StateAwaitingApproval {
		return fmt.Errorf("%w: approve a %s rollout (only one awaiting approval)", ErrState, r.s.State)
	}
	r.setState(now, StateRunning, "approved by an operator")
	r.startWave(now, r.s.Wave+1)
	r.step(now)
	return nil
}

// Abort stops the rollout: updates under way are cancelled and, with
// rollback, the nodes it updated get their previous image again.
func (r *Rollout) Abort(now time.Time, reason string, rollback bool) error {
	if r.s.State.Final() {
		return fmt.Errorf("%w: abort a %s rollout", ErrState, r.s.State)
	}
	if reason == "" {
		reason = "aborted by an operator"
	}
	r.stop(now, StateAborted, reason, rollback)
	r.step(now)
	return nil
}

// supersede ends the rollout for a later one.
func (r *Rollout) supersede(now time.Time, reason string) {
	r.stop(now, StateSuperseded, reason, false)
}

// stop cancels what runs and ends in then, after rolling back if asked.
func (r *Rollout) stop(now time.Time, then State, why string, rollback bool) {
	var cancel []uint32
	for _, id := range r.sortedIDs() {
		n := r.s.Nodes[id]
		switch n.State {
		case NodeUpdating:
			cancel = append(cancel, id)
			r.setNode(now, n, NodeCancelled, why)
		case NodePending:
			r.setNode(now, n, NodeCancelled, why)
		case NodeSoaking:
			r.setNode(now, n, NodeUpdated, "rollout stopped during its soak")
		case NodeRollingBack, NodeRollbackQueued:
			// A superseding rollout takes the node over; its own image
			// goes on instead of the rollback.
			if then == StateSuperseded {
				if n.State == NodeRollingBack {
					cancel = append(cancel, id)
				}
				r.setNode(now, n, NodeCancelled, why)
			}
		}
	}
	if len(cancel) > 0 {
		r.ready.Actions = append(r.ready.Actions, Action{Kind: ActionCancel, Rollout: r.s.Spec.ID, Image: r.s.Spec.Image, Nodes: cancel})
	}
	r.s.Then = then
	if rollback {
		r.rollBack(now, r.updated())
	}
	r.setState(now, StateStopping, why)
	r.finishStop(now)
}

// updated is every node that runs the new image as far as we know.
func (r *Rollout) updated() []*node {
	var out []*node
	for _, id := range r.sortedIDs() {
		if n := r.s.Nodes[id]; n.Updated && n.State != NodeRollingBack && n.State != NodeRollbackQueued && n.State != NodeRolledBack {
			out = append(out, n)
		}
	}
	return out
}

// rollBack queues nodes for their previous image; startNodes asks for it
// in the mesh's order.
func (r *Rollout) rollBack(now time.Time, nodes []*node) {
	for _, n := range nodes {
		if n.PrevMD5 == "" {
			r.setNode(now, n, NodeFailed, "its previous image is unknown: it cannot be rolled back")
			continue
		}
		r.setNode(now, n, NodeRollbackQueued, "back to "+cmp.Or(n.PrevVersion, n.PrevMD5))
	}
}

// askRollback asks for each node's previous image, one action per image.
func (r *Rollout) askRollback(now time.Time, nodes []*node) {
	groups := map[[2]string][]uint32{}
	for _, n := range nodes {
		k := [2]string{n.PrevMD5, n.PrevVersion}
		groups[k] = append(groups[k], n.ID)
		r.setNode(now, n, NodeRollingBack, "back to "+cmp.Or(n.PrevVersion, n.PrevMD5))
	}
	for _, k := range slices.SortedFunc(maps.Keys(groups), func(a, b [2]string) int { return strings.Compare(a[0], b[0]) }) {
		img := r.s.Spec.Image
		img.MD5, img.Version = k[0], k[1]
		r.ready.Actions = append(r.ready.Actions, Action{Kind: ActionRollback, Rollout: r.s.Spec.ID, Image: img, Nodes: groups[k], Forced: true})
	}
}

// finishStop ends a stopping rollout once no rollback is under way.
func (r *Rollout) finishStop(now time.Time) {
	if r.s.State != StateStopping {
		return
	}
	for _, n := range r.s.Nodes {
		if n.State == NodeRollingBack || n.State == NodeRollbackQueued && n.Online {
			return
		}
	}
	for _, id := range r.sortedIDs() {
		if n := r.s.Nodes[id]; n.State == NodeRollbackQueued {
			r.setNode(now, n, NodeFailed, "away from the mesh: not rolled back")
		}
	}
	r.setState(now, r.s.Then, r.s.Reason)
}

// Observe takes one telemetry sample.
func (r *Rollout) Observe(now time.Time, s Sample) {
	n, ok := r.s.Nodes[s.Node]
	if !ok || r.s.State.Final() {
		return
	}
	n.Online = s.Online
	if !s.Online {
		if n.State == NodeSoaking && n.Watch.OfflineSince.IsZero() {
			n.Watch.OfflineSince = now
		}
		r.step(now)
		return
	}
	switch n.State {
	case NodePending:
		if s.MD5 != "" && strings.EqualFold(s.MD5, r.s.Spec.Image.MD5) {
			r.setNode(now, n, NodeSkipped, "up to date")
			break
		}
		if s.MD5 != "" {
			n.PrevMD5 = strings.ToLower(s.MD5)
		}
		n.Base.observe(now, s)
	case NodeSoaking:
		n.Watch.OfflineSince = time.Time{}
		if why := r.judge(n, now, s); why != "" {
			r.fail(now, n, why)
		}
	case NodeUpdating, NodeRollingBack:
		// The outcome may have been lost on its way; telemetry says the
		// same.
		if md5 := strings.ToLower(s.MD5); md5 != "" && (md5 == r.s.Spec.Image.MD5 || n.State == NodeRollingBack && md5 == n.PrevMD5) {
			r.Outcome(now, Outcome{Node: n.ID, MD5: md5, State: OutcomeConfirmed})
			return
		}
	}
	r.step(now)
}

// observe folds a pre-update reading into the baseline.
func (b *baseline) observe(now time.Time, s Sample) {
	const window = 8 // readings the mean follows
	b.Samples++
	k := float64(min(b.Samples, window))
	if s.FreeMemory > 0 {
		if b.Free == 0 {
			b.Free = float64(s.FreeMemory)
		}
		b.Free += (float64(s.FreeMemory) - b.Free) / k
	}
	if rate := b.Drops.rate(now, s.Dropped); rate >= 0 {
		b.Rates++
		b.DropRate += (rate - b.DropRate) / float64(min(b.Rates, window))
	}
	b.Critical = s.CriticalAlerts
}

// gate is one rule of the soak: it returns why the node fails it, or "".
type gate struct {
	name  string
	check func(r *Rollout, n *node, now time.Time, s Sample) string
}

// gates are the soak's rules, in the order a failure is named.
var gates = []gate{
	{"reboot loop", func(r *Rollout, n *node, _ time.Time, s Sample) string {
		if n.Watch.LastUptime > 0 && s.Uptime < n.Watch.LastUptime {
			n.Watch.Reboots++
		}
		n.Watch.LastUptime = s.Uptime
		if limit := max(r.s.Spec.Plan.Gates.MaxReboots, 0); n.Watch.Reboots > limit {
			return fmt.Sprintf("reboot loop: %d reboots since it confirmed (allowed %d)", n.Watch.Reboots, limit)
		}
		return ""
	}},
	{"free memory", func(r *Rollout, n *node, _ time.Time, s Sample) string {
		drop := r.s.Spec.Plan.Gates.MemoryDrop
		if n.Base.Free == 0 || s.FreeMemory == 0 || float64(s.FreeMemory) >= n.Base.Free*(1-drop) {
			return ""
		}
		return fmt.Sprintf("free memory %d B is below its baseline %.0f B by more than %.0f%%", s.FreeMemory, n.Base.Free, drop*100)
	}},
	{"message drops", func(r *Rollout, n *node, now time.Time, s Sample) string {
		rate := n.Watch.Drops.rate(now, s.Dropped)
		limit := n.Base.DropRate + r.s.Spec.Plan.Gates.DropsPerMinute
		if rate < 0 || rate <= limit {
			return ""
		}
		return fmt.Sprintf("drops %.1f messages/min, above its baseline %.1f + %.0f", rate, n.Base.DropRate, r.s.Spec.Plan.Gates.DropsPerMinute)
	}},
	{"critical alert", func(_ *Rollout, n *node, _ time.Time, s Sample) string {
		if s.CriticalAlerts > n.Base.Critical {
			return fmt.Sprintf("new critical alert (%d open, %d before its update)", s.CriticalAlerts, n.Base.Critical)
		}
		return ""
	}},
}

// judge runs every gate on a sample of a soaking node.
func (r *Rollout) judge(n *node, now time.Time, s Sample) string {
	for _, g := range gates {
		if why := g.check(r, n, now, s); why != "" {
			return why
		}
	}
	return ""
}

// Outcome takes a node's answer to an update or a rollback.
func (r *Rollout) Outcome(now time.Time, o Outcome) {
	n, ok := r.s.Nodes[o.Node]
	if !ok || r.s.State.Final() {
		return
	}
	md5 := strings.ToLower(o.MD5)
	isNew := md5 == r.s.Spec.Image.MD5
	switch {
	case (n.State == NodeRollingBack || n.State == NodeRollbackQueued) && md5 == n.PrevMD5:
		if o.State == OutcomeConfirmed {
			n.Updated = false
			r.setNode(now, n, NodeRolledBack, "runs "+cmp.Or(n.PrevVersion, n.PrevMD5)+" again")
		} else {
			r.setNode(now, n, NodeFailed, fmt.Sprintf("rollback %s: %s", o.State, o.Error))
		}
	case isNew && (n.State == NodeUpdating || n.State == NodeCancelled || n.State == NodeFailed && !n.Updated):
		if o.State != OutcomeConfirmed {
			if n.State == NodeUpdating {
				r.fail(now, n, fmt.Sprintf("update %s: %s", o.State, o.Error))
			}
			break
		}
		n.Updated, n.Confirmed = true, now
		n.Watch = watch{}
		switch {
		case n.State != NodeUpdating && r.s.Spec.Plan.Policy == PolicyRollback && (r.s.State == StateStopping || r.s.State == StateFailed):
			r.rollBack(now, []*node{n})
		case n.State != NodeUpdating:
			r.setNode(now, n, NodeUpdated, "confirmed after its update was cancelled or given up")
		default:
			r.setNode(now, n, NodeSoaking, "confirmed the image")
		}
	}
	r.step(now)
}

// fail marks a node failed, rolls it back under the rollback policy if it
// runs the new image, and stops the rollout at the threshold.
func (r *Rollout) fail(now time.Time, n *node, why string) {
	n.Failed = true
	r.setNode(now, n, NodeFailed, why)
	if n.Updated && r.s.Spec.Plan.Policy == PolicyRollback {
		r.rollBack(now, []*node{n})
	}
	if r.s.State == StateStopping {
		return
	}
	failed, started := 0, 0
	for _, m := range r.s.Nodes {
		if m.Failed {
			failed++
		}
		if m.State != NodePending && m.State != NodeSkipped {
			started++
		}
	}
	t := r.s.Spec.Plan.Failure
	over := t.Count > 0 && failed >= t.Count ||
		t.Percent > 0 && float64(failed)*100 >= t.Percent*float64(started) ||
		t.Count == 0 && t.Percent == 0
	if over {
		r.stop(now, StateFailed, fmt.Sprintf("%d of %d updated nodes failed in wave %d (last: node %d: %s)", failed, started, r.s.Wave, n.ID, why),
			r.s.Spec.Plan.Policy == PolicyRollback)
	}
}

// Joined says a node joined the mesh or came back. A target the rollout
// has not seen is put in the current wave, or the next if the current one
// is only soaking.
func (r *Rollout) Joined(now time.Time, info NodeInfo) {
	if r.s.State.Final() {
		return
	}
	info.Online = true
	if n, ok := r.s.Nodes[info.ID]; ok {
		n.Online = true
		if n.State == NodePending && info.MD5 != "" {
			n.PrevMD5, n.PrevVersion = strings.ToLower(info.MD5), info.Version
			if why := r.ineligible(info); why != "" {
				r.setNode(now, n, NodeSkipped, why)
			}
		}
		r.step(now)
		return
	}
	if !r.targets(info) {
		return
	}
	n := &node{ID: info.ID, State: NodePending, Since: now, Online: true, PrevMD5: strings.ToLower(info.MD5), PrevVersion: info.Version, Wave: r.joinWave()}
	r.s.Nodes[info.ID] = n
	if why := r.ineligible(info); why != "" {
		n.State, n.Reason = NodeSkipped, why
	}
	r.event(now, Event{Kind: EventNode, Node: n.ID, To: string(n.State), Reason: cmp.Or(n.Reason, fmt.Sprintf("joined; wave %d", n.Wave))})
	r.step(now)
}

// joinWave is the wave a node that joins now goes in.
func (r *Rollout) joinWave() int {
	if r.waveStarting(r.s.Wave) || r.s.Wave+1 >= len(r.s.Sizes) {
		return r.s.Wave
	}
	return r.s.Wave + 1
}

// Left says a node left the mesh.
func (r *Rollout) Left(now time.Time, id uint32) {
	n, ok := r.s.Nodes[id]
	if !ok || r.s.State.Final() {
		return
	}
	n.Online = false
	if n.State == NodeSoaking && n.Watch.OfflineSince.IsZero() {
		n.Watch.OfflineSince = now
	}
	r.step(now)
}

// SetTopology takes the mesh's current tree. A node missing from it (away,
// or cut off behind a rebooting relay) keeps its last known parent: the
// order must not forget who reaches the mesh through whom.
func (r *Rollout) SetTopology(now time.Time, t Topology) {
	if r.s.State.Final() {
		return
	}
	merged := Topology{Root: t.Root, Parent: maps.Clone(t.Parent)}
	if merged.Parent == nil {
		merged.Parent = map[uint32]uint32{}
	}
	if t.Root == r.s.Topology.Root {
		for c, p := range r.s.Topology.Parent {
			if _, ok := merged.Parent[c]; !ok {
				merged.Parent[c] = p
			}
		}
	}
	r.setTopology(merged)
	r.step(now)
}

// Tick is time passing; call it at NextDeadline (calling more often is
// harmless).
func (r *Rollout) Tick(now time.Time) { r.step(now) }

// NextDeadline is when Tick must be called next (zero: no deadline).
func (r *Rollout) NextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if r.s.State.Final() {
		return next
	}
	p := r.s.Spec.Plan
	for _, n := range r.s.Nodes {
		switch n.State {
		case NodeSoaking:
			at(n.Confirmed.Add(p.Soak))
			if !n.Watch.OfflineSince.IsZero() {
				at(n.Watch.OfflineSince.Add(p.Gates.OfflineGrace))
			}
		case NodeUpdating, NodeRollingBack:
			at(n.Since.Add(p.UpdateTimeout))
		case NodePending:
			if n.Online && n.Wave <= r.s.Wave && n.Base.Samples < p.Gates.BaselineSamples {
				at(n.Since.Add(p.Gates.BaselineWait))
			}
		}
	}
	if !r.s.PlanDone.IsZero() {
		at(r.s.PlanDone.Add(p.Linger))
	}
	if w := p.Window; w != nil && r.s.State == StateRunning {
		if open, opens := w.Open(r.s.WaveSince); !open {
			at(opens)
		}
	}
	return next
}

// step is where every input ends: judge time-bound gates, move waves on,
// start what may start.
func (r *Rollout) step(now time.Time) {
	if r.s.State.Final() {
		return
	}
	p := r.s.Spec.Plan
	for _, id := range r.sortedIDs() {
		n := r.s.Nodes[id]
		switch n.State {
		case NodeUpdating:
			if !now.Before(n.Since.Add(p.UpdateTimeout)) {
				r.fail(now, n, fmt.Sprintf("no outcome within %v of its update", p.UpdateTimeout))
			}
		case NodeRollingBack:
			if !now.Before(n.Since.Add(p.UpdateTimeout)) {
				r.setNode(now, n, NodeFailed, fmt.Sprintf("its rollback had no outcome within %v", p.UpdateTimeout))
			}
		case NodeSoaking:
			if !n.Watch.OfflineSince.IsZero() && r.cutOff(id) {
				// Behind a relay that reboots or is away: not its fault;
				// the grace starts again once the path is back.
				n.Watch.OfflineSince = now
			}
			if off := n.Watch.OfflineSince; !off.IsZero() && !now.Before(off.Add(p.Gates.OfflineGrace)) {
				r.fail(now, n, fmt.Sprintf("offline for %v during its soak", now.Sub(off).Round(time.Second)))
			} else if off.IsZero() && !now.Before(n.Confirmed.Add(p.Soak)) {
				r.setNode(now, n, NodePassed, fmt.Sprintf("kept its gates for %v", p.Soak))
			}
		}
	}
	r.startNodes(now, ActionRollback)
	switch r.s.State {
	case StateStopping:
		r.finishStop(now)
		return
	case StateRunning:
	default:
		return
	}
	if r.waveOver(r.s.Wave) {
		r.passWave(now)
		if r.s.State != StateRunning {
			return
		}
	}
	r.startNodes(now, ActionUpdate)
}

// cutOff reports whether a node's path to the root runs through a node
// that updates, rolls back or is away.
func (r *Rollout) cutOff(id uint32) bool {
	for _, a := range r.ancestors(id) {
		if m, ok := r.s.Nodes[a]; ok && (m.State.inFlight() || !m.Online) {
			return true
		}
	}
	return false
}

// waveStarting: nodes of wave w (or earlier) are still to start or updating.
func (r *Rollout) waveStarting(w int) bool {
	for _, n := range r.s.Nodes {
		if n.Wave <= w && (n.State == NodePending && n.Online || n.State.inFlight()) {
			return true
		}
	}
	return false
}

// waveOver: every node of wave w and before that is online settled, none
// soaking.
func (r *Rollout) waveOver(w int) bool {
	for _, n := range r.s.Nodes {
		if n.Wave <= w && (n.State == NodePending && n.Online || n.State.inFlight() || n.State == NodeSoaking) {
			return false
		}
	}
	return true
}

// passWave moves on from a wave whose nodes all passed: offline nodes go
// to the next wave, which starts now, after an approval or a pause.
func (r *Rollout) passWave(now time.Time) {
	w := r.s.Wave
	last := w+1 >= len(r.s.Sizes)
	if !last {
		for _, n := range r.s.Nodes {
			if n.Wave <= w && n.State == NodePending {
				n.Wave = w + 1 // offline now: it goes with the next wave
			}
		}
	}
	if last {
		if r.s.PlanDone.IsZero() {
			r.s.PlanDone = now
			r.event(now, Event{Kind: EventWavePassed, Wave: w})
		}
		var missing []uint32
		for _, id := range r.sortedIDs() {
			if r.s.Nodes[id].State == NodePending {
				missing = append(missing, id)
			}
		}
		switch {
		case len(missing) == 0:
			r.setState(now, StateCompleted, r.summary())
		case !now.Before(r.s.PlanDone.Add(r.s.Spec.Plan.Linger)):
			r.setState(now, StateCompleted, fmt.Sprintf("%s; %d nodes never came back within %v: %v", r.summary(), len(missing), r.s.Spec.Plan.Linger, missing))
		}
		return
	}
	r.event(now, Event{Kind: EventWavePassed, Wave: w})
	switch p := r.s.Spec.Plan; {
	case p.Approval:
		r.setState(now, StateAwaitingApproval, fmt.Sprintf("wave %d passed; wave %d waits for approval", w, w+1))
	case p.Pause:
		r.s.NextWave = true
		r.setState(now, StatePaused, fmt.Sprintf("wave %d passed; paused before wave %d", w, w+1))
	default:
		r.startWave(now, w+1)
	}
}

func (r *Rollout) startWave(now time.Time, w int) {
	w = min(w, max(len(r.s.Sizes)-1, 0))
	r.s.Wave, r.s.WaveSince = w, now
	k := 0
	for _, n := range r.s.Nodes {
		if n.Wave == w && n.State == NodePending {
			k++
		}
	}
	r.event(now, Event{Kind: EventWaveStarted, Wave: w, Reason: fmt.Sprintf("%d nodes", k)})
}

func (r *Rollout) summary() string {
	return fmt.Sprintf("%d passed, %d updated, %d failed, %d rolled back, %d skipped",
		r.Count(NodePassed), r.Count(NodeUpdated), r.Count(NodeFailed), r.Count(NodeRolledBack), r.Count(NodeSkipped))
}

// startNodes starts the current wave's updates (or the queued rollbacks)
// the mesh can spare: leaves first (a node starts once no descendant
// waits or updates), never with an ancestor or descendant updating or
// rolling back, at most MaxPerSubtree under any relay and MaxConcurrent in
// all; updates only inside the window (a rollback does not wait for it).
func (r *Rollout) startNodes(now time.Time, kind ActionKind) {
	p := r.s.Spec.Plan
	if w := p.Window; w != nil && kind == ActionUpdate {
		if open, opens := w.Open(now); !open {
			if !r.s.WindowShut {
				r.s.WindowShut = true
				r.event(now, Event{Kind: EventWindow, Reason: "maintenance window closed; next opens " + opens.UTC().Format(time.RFC3339)})
			}
			r.s.WaveSince = now // NextDeadline looks for the next opening from here
			return
		}
		if r.s.WindowShut {
			r.s.WindowShut = false
			r.event(now, Event{Kind: EventWindow, Reason: "maintenance window open"})
		}
	}
	busyBelow := map[uint32]bool{} // a descendant waits or updates
	under := map[uint32]int{}      // nodes updating in the subtree
	inFlight := 0
	var cands []uint32
	for _, id := range r.sortedIDs() {
		n := r.s.Nodes[id]
		waiting := n.State == NodePending && n.Online && n.Wave <= r.s.Wave && kind == ActionUpdate && r.hasBaseline(n, now) ||
			n.State == NodeRollbackQueued && n.Online
		if waiting && (kind == ActionUpdate) == (n.State == NodePending) {
			cands = append(cands, id)
		}
		if !waiting && !n.State.inFlight() {
			continue
		}
		for _, a := range r.ancestors(id) {
			busyBelow[a] = true
			if n.State.inFlight() {
				under[a]++
			}
		}
		if n.State.inFlight() {
			inFlight++
		}
	}
	r.order(cands)
	var started []uint32
	for _, id := range cands {
		if p.MaxConcurrent > 0 && inFlight >= p.MaxConcurrent {
			break
		}
		if busyBelow[id] || under[id] > 0 {
			continue // leaves first
		}
		anc := r.ancestors(id)
		blocked := false
		for _, a := range anc {
			if m, ok := r.s.Nodes[a]; ok && m.State.inFlight() || under[a] >= p.MaxPerSubtree {
				blocked = true
				break
			}
		}
		if id == r.s.Topology.Root && r.othersLeft(id) {
			blocked = true // the root goes last of all
		}
		if blocked {
			continue
		}
		for _, a := range anc {
			under[a]++
		}
		inFlight++
		started = append(started, id)
	}
	if len(started) == 0 {
		return
	}
	if kind == ActionRollback {
		var nodes []*node
		for _, id := range started {
			nodes = append(nodes, r.s.Nodes[id])
		}
		r.askRollback(now, nodes)
		return
	}
	for _, id := range started {
		r.setNode(now, r.s.Nodes[id], NodeUpdating, "")
	}
	r.ready.Actions = append(r.ready.Actions, Action{Kind: ActionUpdate, Rollout: r.s.Spec.ID, Image: r.s.Spec.Image, Nodes: started, Forced: r.s.Spec.Force})
}

// hasBaseline: the node's readings before its update are enough to judge
// it by, or it waited for them long enough.
func (r *Rollout) hasBaseline(n *node, now time.Time) bool {
	g := r.s.Spec.Plan.Gates
	return n.Base.Samples >= g.BaselineSamples || !now.Before(n.Since.Add(g.BaselineWait))
}

// othersLeft: a node other than id is still to do.
func (r *Rollout) othersLeft(id uint32) bool {
	for _, n := range r.s.Nodes {
		if n.ID != id && (n.State == NodePending || n.State.inFlight() || n.State == NodeSoaking) {
			return true
		}
	}
	return false
}

// Snapshot is the rollout's whole state as JSON.
func (r *Rollout) Snapshot() ([]byte, error) { return json.Marshal(&r.s) }

// Restore rebuilds a rollout from Snapshot's JSON. Updates and rollbacks
// that were under way are asked for again in its first Ready (the caller
// may have lost them with the restart; receivers resume what they staged).
func Restore(now time.Time, data []byte) (*Rollout, error) {
	r := &Rollout{}
	if err := json.Unmarshal(data, &r.s); err != nil {
		return nil, fmt.Errorf("rollout: restore: %w", err)
	}
	if err := r.s.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("rollout: restore: %w", err)
	}
	if r.s.Nodes == nil {
		r.s.Nodes = map[uint32]*node{}
	}
	for id, n := range r.s.Nodes {
		if n == nil || n.ID != id {
			return nil, fmt.Errorf("rollout: restore %s: node record %d is missing or names another node", r.s.Spec.ID, id)
		}
		if !validNodeState(n.State) {
			return nil, fmt.Errorf("rollout: restore %s: node %d: unknown state %q", r.s.Spec.ID, id, n.State)
		}
		if n.Wave < 0 || n.Wave >= max(len(r.s.Sizes), 1) {
			return nil, fmt.Errorf("rollout: restore %s: node %d: wave %d of %d", r.s.Spec.ID, id, n.Wave, len(r.s.Sizes))
		}
	}
	if !validState(r.s.State) || r.s.Wave < 0 || r.s.Wave >= max(len(r.s.Sizes), 1) {
		return nil, fmt.Errorf("rollout: restore %s: state %q, wave %d of %d", r.s.Spec.ID, r.s.State, r.s.Wave, len(r.s.Sizes))
	}
	r.setTopology(r.s.Topology)
	if r.s.State.Final() {
		return r, nil
	}
	var updating, back []*node
	for _, id := range r.sortedIDs() {
		switch n := r.s.Nodes[id]; n.State {
		case NodeUpdating:
			updating = append(updating, n)
		case NodeRollingBack:
			back = append(back, n)
		}
	}
	if len(updating) > 0 {
		a := Action{Kind: ActionUpdate, Rollout: r.s.Spec.ID, Image: r.s.Spec.Image, Forced: r.s.Spec.Force}
		for _, n := range updating {
			a.Nodes = append(a.Nodes, n.ID)
		}
		r.ready.Actions = append(r.ready.Actions, a)
	}
	r.askRollback(now, back)
	r.event(now, Event{Kind: EventState, From: string(r.s.State), To: string(r.s.State), Reason: "restored"})
	r.step(now)
	return r, nil
}

func validState(s State) bool {
	switch s {
	case StateWaiting, StateRunning, StateAwaitingApproval, StatePaused, StateStopping, StateCompleted, StateFailed, StateAborted, StateSuperseded:
		return true
	}
	return false
}

func validNodeState(s NodeState) bool {
	switch s {
	case NodePending, NodeUpdating, NodeSoaking, NodePassed, NodeUpdated, NodeFailed, NodeRollingBack, NodeRollbackQueued, NodeRolledBack, NodeSkipped, NodeCancelled:
		return true
	}
	return false
}
