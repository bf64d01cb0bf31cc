package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/rollout"
	"github.com/meshfleet/meshfleet/status"
)

// rolloutsFile holds the rollout manager's snapshot in state_dir.
const rolloutsFile = "rollouts.json"

// rolloutRunner runs the rollout engine in the node's loop: it feeds the
// manager the loop's facts (telemetry, topology, per-node OTA outcomes,
// nodes coming and going, critical alerts) with the loop's clock, ticks it
// at its deadline, and turns its actions into distributor campaigns. It is
// a node plugin; every field but saved is touched only from the loop.
type rolloutRunner struct {
	g    *Gateway
	host mesh.Host
	c    *status.Collector
	d    *ota.Distributor
	mgr  *rollout.Manager
	// restore is the snapshot read at startup, restored with the loop's
	// clock when the node first runs.
	restore []byte
	// installs is what each node is to install now, by node.
	installs map[uint32]rolloutInstall
	// campaigns is the campaign this runner has running per role and
	// hardware: the distributor runs one per role and hardware, so the
	// nodes of every rollout of an image share it, and rollbacks go
	// before updates.
	campaigns map[[2]string]*rolloutCampaign
	seq       int
	topoDue   bool
	// reconciling guards reconcile against itself; reconcileAgain asks
	// for one more pass.
	reconciling, reconcileAgain bool
}

type rolloutInstall struct {
	Image    rollout.Image
	Forced   bool
	Rollback bool
}

type rolloutCampaign struct {
	ID    string
	MD5   string
	Nodes []uint32
}

func newRolloutRunner(g *Gateway) *rolloutRunner {
	return &rolloutRunner{g: g, installs: map[uint32]rolloutInstall{}, campaigns: map[[2]string]*rolloutCampaign{}}
}

// loadRollouts reads the saved snapshot; it is restored when the node runs.
func (g *Gateway) loadRollouts() error {
	g.rollouts = newRolloutRunner(g)
	data, err := os.ReadFile(filepath.Join(g.cfg.StateDir, rolloutsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := rollout.RestoreManager(time.Now(), data); err != nil {
		return fmt.Errorf("state file %s is corrupt (%v); move it away to start without rollouts", filepath.Join(g.cfg.StateDir, rolloutsFile), err)
	}
	g.rollouts.restore = data
	return nil
}

// saveRollouts writes the manager's snapshot, read in the node's loop.
func (g *Gateway) saveRollouts() error {
	var data []byte
	var serr error
	err := g.do(context.Background(), func(time.Time, *mesh.Node, *status.Collector, *ota.Distributor) {
		if m := g.rollouts.mgr; m != nil {
			data, serr = m.Snapshot()
		}
	})
	if err != nil || data == nil {
		return serr // not running: the file holds the last state
	}
	if serr != nil {
		return serr
	}
	return writeFileAtomic(filepath.Join(g.cfg.StateDir, rolloutsFile), data)
}

// bind takes the plugins of a (re)started node.
func (r *rolloutRunner) bind(now time.Time, c *status.Collector, d *ota.Distributor) {
	r.c, r.d = c, d
	clear(r.campaigns) // the new distributor runs none of ours
	if r.mgr != nil {
		return
	}
	r.mgr = rollout.NewManager()
	if r.restore != nil {
		m, err := rollout.RestoreManager(now, r.restore)
		if err != nil {
			r.g.log.Warn("rollouts not restored", "err", err)
		} else {
			r.mgr = m
		}
		r.restore = nil
	}
}

// Attach implements mesh.Plugin.
func (r *rolloutRunner) Attach(h mesh.Host) { r.host = h }

// Types implements mesh.Plugin: the runner takes no packages.
func (r *rolloutRunner) Types() []int { return nil }

// HandlePackage implements mesh.Plugin.
func (r *rolloutRunner) HandlePackage(time.Time, mesh.ConnID, protocol.Header, []byte) {}

// NextDeadline implements mesh.Plugin.
func (r *rolloutRunner) NextDeadline() time.Time {
	if r.mgr == nil {
		return time.Time{}
	}
	return r.mgr.NextDeadline()
}

// Tick implements mesh.Plugin.
func (r *rolloutRunner) Tick(now time.Time) {
	if r.mgr == nil {
		return
	}
	if r.topoDue && r.host != nil {
		r.topoDue = false
		r.mgr.SetTopology(now, r.topology())
	}
	if d := r.mgr.NextDeadline(); !d.IsZero() && !now.Before(d) {
		r.mgr.Tick(now)
	}
	r.flush(now)
}

// OnEvent implements mesh.EventObserver: the facts the rollouts judge.
func (r *rolloutRunner) OnEvent(now time.Time, ev mesh.Event) {
	if r.mgr == nil || len(r.mgr.Rollouts()) == 0 {
		return
	}
	switch e := ev.(type) {
	case status.NodeUpdated:
		r.mgr.Observe(now, r.sample(e.Node, &e.Metrics))
	case status.NodeOnline:
		if e.Online {
			r.mgr.Joined(now, r.info(e.Node))
		} else {
			r.mgr.Left(now, e.Node)
		}
	case status.AlertEvent:
		if e.Alert.Severity == alert.SeverityCritical {
			if st, ok := r.c.Model().Node(e.Alert.Node); ok {
				r.mgr.Observe(now, r.sample(e.Alert.Node, &st.Metrics))
			}
		}
	case ota.CampaignEvent:
		if e.Node == 0 && e.State != ota.CampaignRunning && e.State != ota.CampaignPaused {
			// A campaign ended: an operator's that held the role and
			// hardware, or one of ours that another took over.
			r.reconcile(now)
		}
		r.outcome(now, e)
	case mesh.NewConnection, mesh.DroppedConnection, mesh.ChangedConnections:
		r.topoDue = true // taken on the next tick, once the layout settled
		return
	default:
		return
	}
	r.flush(now)
}

// sample is a status report as the engine reads it.
func (r *rolloutRunner) sample(id uint32, m *status.Metrics) rollout.Sample {
	s := rollout.Sample{Node: id, Online: true, Uptime: time.Duration(m.Uptime) * time.Second, Dropped: uint64(m.MessagesDropped)}
	if m.FreeMemory != 0 && m.FreeMemory != ^uint32(0) {
		s.FreeMemory = m.FreeMemory
	}
	// A node reports the image it runs; while it is still on trial
	// (switching) it has not confirmed it.
	if m.OTAState != status.OTASwitching {
		s.MD5 = strings.ToLower(m.FirmwareMD5)
	}
	for _, a := range r.c.Alerts().Active() {
		if a.Node == id && a.Severity == alert.SeverityCritical {
			s.CriticalAlerts++
		}
	}
	return s
}

// info is what the collector knows of a node, with its registry tags.
func (r *rolloutRunner) info(id uint32) rollout.NodeInfo {
	st, ok := r.c.Model().Node(id)
	n := rollout.NodeInfo{ID: id, Online: ok && st.Online}
	if ok {
		m := st.Metrics
		n.Role, n.Hardware, n.Version, n.MD5 = m.Role, m.Hardware, m.FirmwareVersion, strings.ToLower(m.FirmwareMD5)
	}
	if e, ok := r.g.registry.reg.Get(id); ok {
		n.Tags = e.Tags
	}
	return n
}

func (r *rolloutRunner) topology() rollout.Topology {
	return rollout.Topology{Root: r.host.ID(), Parent: parentsOf(r.host.Tree())}
}

// parentsOf is each node's parent in the tree.
func parentsOf(t protocol.NodeTree) map[uint32]uint32 {
	out := map[uint32]uint32{}
	var walk func(t *protocol.NodeTree)
	walk = func(t *protocol.NodeTree) {
		for i := range t.Subs {
			out[t.Subs[i].NodeID] = t.NodeID
			walk(&t.Subs[i])
		}
	}
	walk(&t)
	return out
}

// outcome passes a node's final answer to a campaign on to the rollouts.
func (r *rolloutRunner) outcome(now time.Time, e ota.CampaignEvent) {
	if e.Node == 0 {
		return
	}
	var st rollout.OutcomeState
	switch e.Progress.State {
	case ota.StateConfirmed:
		st = rollout.OutcomeConfirmed
	case ota.StateRolledBack:
		st = rollout.OutcomeRolledBack
	case ota.StateRefused:
		st = rollout.OutcomeRefused
	default:
		// failed and lost are retried by the campaign; the engine's
		// update_timeout ends a node that never gets there.
		return
	}
	c, ok := r.d.Campaign(e.Campaign)
	if !ok {
		return
	}
	md5 := strings.ToLower(c.Image.MD5)
	if in, ok := r.installs[e.Node]; ok && in.Image.MD5 == md5 {
		delete(r.installs, e.Node)
	}
	r.mgr.Outcome(now, rollout.Outcome{Node: e.Node, MD5: md5, State: st, Error: e.Progress.Err})
}

// flush carries out the manager's actions and publishes its events.
func (r *rolloutRunner) flush(now time.Time) {
	rd := r.mgr.Ready()
	if rd.Empty() {
		return
	}
	r.mgr.Advance()
	for _, a := range rd.Actions {
		for _, id := range a.Nodes {
			switch a.Kind {
			case rollout.ActionUpdate:
				r.installs[id] = rolloutInstall{Image: a.Image, Forced: a.Forced}
			case rollout.ActionRollback:
				r.installs[id] = rolloutInstall{Image: a.Image, Forced: true, Rollback: true}
			case rollout.ActionCancel:
				delete(r.installs, id)
			}
		}
	}
	if len(rd.Actions) > 0 {
		r.reconcile(now)
	}
	for _, e := range rd.Events {
		r.g.publishRolloutEvent(r.mgr, e)
	}
	r.g.markDirty()
}

// reconcile makes the distributor run what installs asks for: per role and
// hardware one campaign, of a rollback image while any is asked for, else
// of the image most nodes wait for.
func (r *rolloutRunner) reconcile(now time.Time) {
	// Starting a campaign emits events that come back here at once (the
	// node shows them to its observers as they happen): run again after,
	// not inside.
	if r.reconciling {
		r.reconcileAgain = true
		return
	}
	r.reconciling = true
	defer func() { r.reconciling = false }()
	for {
		r.reconcileAgain = false
		r.reconcileOnce(now)
		if !r.reconcileAgain {
			return
		}
	}
}

func (r *rolloutRunner) reconcileOnce(now time.Time) {
	groups := map[[2]string][]uint32{}
	for id, in := range r.installs {
		k := [2]string{in.Image.Role, in.Image.Hardware}
		groups[k] = append(groups[k], id)
	}
	for k, c := range r.campaigns {
		if _, ok := groups[k]; !ok {
			r.stopCampaign(now, k, c)
		}
	}
	for k, ids := range groups {
		slices.Sort(ids)
		pick := r.pick(ids, r.campaigns[k])
		var nodes []uint32
		forced := false
		for _, id := range ids {
			if in := r.installs[id]; in.Image.MD5 == pick.MD5 {
				nodes = append(nodes, id)
				forced = forced || in.Forced
			}
		}
		if c := r.campaigns[k]; c != nil && c.MD5 == pick.MD5 && slices.Equal(c.Nodes, nodes) && r.running(c.ID) {
			continue
		}
		if other := r.operatorCampaign(k); other != "" {
			// Starting ours would supersede it: the nodes wait until it
			// ends (their update_timeout still runs).
			r.g.log.Info("rollout campaign waits for an operator's campaign of the same role and hardware", "campaign", other, "role", k[0], "hardware", k[1])
			continue
		}
		if err := r.startCampaign(now, k, pick, nodes, forced); err != nil {
			r.g.log.Warn("rollout campaign not started", "image", pick.MD5, "nodes", len(nodes), "err", err)
			// The nodes cannot get the image: their outcome is a failure.
			for _, id := range nodes {
				delete(r.installs, id)
				r.mgr.Outcome(now, rollout.Outcome{Node: id, MD5: pick.MD5, State: rollout.OutcomeFailed, Error: err.Error()})
			}
		}
	}
}

// pick is the image a group's campaign carries next: a rollback first,
// then the running campaign's image while it has nodes, then the image
// most nodes wait for.
func (r *rolloutRunner) pick(ids []uint32, cur *rolloutCampaign) rollout.Image {
	count := map[string]int{}
	images := map[string]rollout.Image{}
	var back []string
	for _, id := range ids {
		in := r.installs[id]
		count[in.Image.MD5]++
		images[in.Image.MD5] = in.Image
		if in.Rollback {
			back = append(back, in.Image.MD5)
		}
	}
	if len(back) > 0 {
		slices.Sort(back)
		return images[back[0]]
	}
	if cur != nil && count[cur.MD5] > 0 {
		return images[cur.MD5]
	}
	best := slices.SortedFunc(maps.Keys(count), func(a, b string) int { return cmp.Or(count[b]-count[a], strings.Compare(a, b)) })
	return images[best[0]]
}

// rolloutCampaignPrefix starts the ids of the campaigns rollouts start.
const rolloutCampaignPrefix = "ro-"

// operatorCampaign is a running or paused campaign for role and hardware
// k that no rollout started, "" if there is none.
func (r *rolloutRunner) operatorCampaign(k [2]string) string {
	for _, c := range r.d.Campaigns() {
		if strings.HasPrefix(c.ID, rolloutCampaignPrefix) || c.Targets.Role != k[0] || c.Targets.Hardware != k[1] {
			continue
		}
		if c.State == ota.CampaignRunning || c.State == ota.CampaignPaused {
			return c.ID
		}
	}
	return ""
}

func (r *rolloutRunner) running(id string) bool {
	c, ok := r.d.Campaign(id)
	return ok && c.State == ota.CampaignRunning
}

// startCampaign starts a campaign of img for nodes; it supersedes the
// group's campaign in the distributor (receivers keep the chunks they
// hold).
func (r *rolloutRunner) startCampaign(now time.Time, k [2]string, img rollout.Image, nodes []uint32, forced bool) error {
	stored, err := r.g.findImage(img.MD5)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.MD5, err)
	}
	data, err := r.g.store.ReadAll(stored.ID)
	if err != nil {
		return err
	}
	r.seq++
	id := fmt.Sprintf("%s%s-%x", rolloutCampaignPrefix, img.MD5[:8], uint32(now.UnixNano()/1e6)+uint32(r.seq))
	spec := ota.CampaignSpec{ID: id, Mode: ota.Mode(r.g.cfg.OTA.Mode), Method: r.g.cfg.OTA.Compress, Nodes: nodes, Forced: forced,
		Image: ota.Image{MD5: stored.MD5, Role: k[0], Hardware: k[1], Version: stored.Version, Data: data, Signature: stored.Signature,
			Manifest: stored.Manifest, ManifestSig: stored.ManifestSig}}
	switch string(spec.Mode) {
	case modeAuto:
		spec.Mode = ota.ModeBroadcast // what auto picks for a node list (autoMode)
	case string(ota.ModeStockTurbo):
		spec.Mode = ota.ModeStock // a node list needs a mode that addresses nodes
	}
	if spec.Mode == ota.ModeStock {
		spec.Method = "none"
	}
	if _, err := r.d.Start(now, spec); err != nil {
		return err
	}
	r.campaigns[k] = &rolloutCampaign{ID: id, MD5: img.MD5, Nodes: nodes}
	r.g.mu.Lock()
	r.g.imageMeta[id] = imageView(stored)
	r.g.mu.Unlock()
	return nil
}

func (r *rolloutRunner) stopCampaign(now time.Time, k [2]string, c *rolloutCampaign) {
	delete(r.campaigns, k)
	if r.running(c.ID) {
		if err := r.d.Abort(now, c.ID); err != nil {
			r.g.log.Warn("rollout campaign not aborted", "campaign", c.ID, "err", err)
		}
	}
}

// publishRolloutEvent sends a rollout transition to the stream, MQTT and
// the history.
func (g *Gateway) publishRolloutEvent(m *rollout.Manager, e rollout.Event) {
	r, ok := m.Get(e.Rollout)
	if !ok {
		return
	}
	sum := fmt.Sprintf("rollout %s: %s", e.Rollout, e.Kind)
	switch e.Kind {
	case rollout.EventNode:
		sum = fmt.Sprintf("rollout %s: node %d %s → %s", e.Rollout, e.Node, e.From, e.To)
	case rollout.EventState:
		sum = fmt.Sprintf("rollout %s %s", e.Rollout, e.To)
	case rollout.EventWaveStarted, rollout.EventWavePassed:
		sum = fmt.Sprintf("rollout %s: wave %d %s", e.Rollout, e.Wave, strings.TrimPrefix(e.Kind, "wave_"))
	}
	if e.Reason != "" {
		sum += ": " + e.Reason
	}
	if s := g.hist.store.Load(); s != nil {
		data, _ := json.Marshal(e)
		s.AddEvent(fleet.HistoryEvent{T: e.At.UTC(), Kind: "rollout", NodeID: e.Node, Summary: sum, Data: data})
	}
	// Recorded first: a subscriber that sees the event finds it there.
	v := rolloutView(r, false)
	v.Event = &e
	g.fan.publish(fleet.Event{Rollout: &v})
	if e.Kind == rollout.EventState {
		g.log.Info("rollout", "rollout", e.Rollout, "from", e.From, "to", e.To, "reason", e.Reason)
	}
}

// rolloutView is a rollout as the API shows it; nodes lists each node.
func rolloutView(r *rollout.Rollout, nodes bool) fleet.Rollout {
	st, why := r.State()
	w, n := r.Wave()
	v := fleet.Rollout{ID: r.ID(), State: string(st), Reason: why, Wave: w, Waves: n, Spec: r.Spec(), Count: map[string]int{}}
	for _, s := range r.Nodes() {
		v.Count[string(s.State)]++
	}
	if nodes {
		v.Nodes = r.Nodes()
	}
	return v
}
