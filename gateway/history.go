package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/history"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status"
)

// HistoryConfig is the history database (package history) in
// <state_dir>/history.db.
type HistoryConfig struct {
	Enabled bool `yaml:"enabled"`
	// RawRetention keeps every sample; RollupRetention keeps 1-minute
	// rollups, events, alerts and campaigns.
	RawRetention    Duration `yaml:"raw_retention"`
	RollupRetention Duration `yaml:"rollup_retention"`
	// QueueSize is how many samples may wait for the writer; beyond it
	// samples are dropped (meshfleet_history_samples_dropped_total).
	QueueSize int `yaml:"queue_size"`
}

func defaultHistoryConfig() HistoryConfig {
	return HistoryConfig{Enabled: true, RawRetention: Duration(48 * time.Hour), RollupRetention: Duration(30 * 24 * time.Hour), QueueSize: 65536}
}

func (c Config) validateHistory() error {
	bad := func(key, format string, a ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...))
	}
	h := c.History
	if !h.Enabled {
		return nil
	}
	if h.RawRetention.D() < time.Minute {
		return bad("history.raw_retention", "must be at least 1m, got %s", h.RawRetention.D())
	}
	if h.RollupRetention.D() < h.RawRetention.D() {
		return bad("history.rollup_retention", "must be at least history.raw_retention (%s), got %s", h.RawRetention.D(), h.RollupRetention.D())
	}
	if h.QueueSize < 1 || h.QueueSize > 1<<24 {
		return bad("history.queue_size", "must be between 1 and %d samples, got %d", 1<<24, h.QueueSize)
	}
	return nil
}

// historyFile is the database's name in state_dir.
const historyFile = "history.db"

// historyState is the gateway's history: the open store, or why there is
// none; and the gateway's latest time, which stamps what has no time of
// its own (operator actions) and ends the default query range.
type historyState struct {
	store atomic.Pointer[history.Store]
	mu    sync.Mutex
	err   error // why store is nil
	// closed stops a reopen that succeeds after the gateway stopped.
	closed bool
	// stopReopen ends the reopening goroutine; reopening ends with it.
	stopReopen context.CancelFunc
	reopening  sync.WaitGroup
	reopened   chan struct{} // closed when a reopen succeeds
	now        atomic.Int64
}

// History reopen schedule: a database that could not be opened (locked
// by another program, moved away after corruption) is tried again, so
// the operator's fix takes effect without restarting the gateway.
const (
	historyReopenFirst = 10 * time.Second
	historyReopenMax   = 5 * time.Minute
)

// openHistory opens the database for Run. A database that cannot be used
// leaves the history off with the reason, logged and answered by the
// history routes (503), and is tried again on a backoff until it opens;
// the gateway serves its live state all the same.
func (g *Gateway) openHistory() {
	h := &g.hist
	h.mu.Lock()
	h.closed = false
	h.mu.Unlock()
	if !g.cfg.History.Enabled {
		h.setErr(fmt.Errorf("%w: off in the config (history.enabled: false)", fleet.ErrHistoryUnavailable))
		return
	}
	err := g.tryOpenHistory()
	if err == nil {
		return
	}
	first := g.historyReopen
	if first <= 0 {
		first = historyReopenFirst
	}
	g.log.Error("history off; live data is served as usual", "err", err, "retry_in", first,
		"fix", "move the file away (a new one is created) or stop the program holding it; the gateway tries again by itself")
	ctx, cancel := context.WithCancel(context.Background())
	h.stopReopen = cancel
	h.reopened = make(chan struct{})
	h.reopening.Add(1)
	go func() {
		defer h.reopening.Done()
		g.reopenHistory(ctx, first)
	}()
}

// tryOpenHistory opens the database once; the error is also kept for the
// history routes.
func (g *Gateway) tryOpenHistory() error {
	h := &g.hist
	s, err := history.Open(filepath.Join(g.cfg.StateDir, historyFile), history.Options{
		RawRetention: g.cfg.History.RawRetention.D(), RollupRetention: g.cfg.History.RollupRetention.D(),
		QueueSize: g.cfg.History.QueueSize, Logger: g.log.With("component", "history"),
	})
	if err != nil {
		h.setErr(err)
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return s.Close()
	}
	h.store.Store(s)
	return nil
}

// reopenHistory tries the database again, waiting first and then twice
// as long each time up to historyReopenMax, until it opens or ctx ends.
func (g *Gateway) reopenHistory(ctx context.Context, wait time.Duration) {
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := g.tryOpenHistory()
		if err == nil {
			g.log.Info("history on again")
			close(g.hist.reopened)
			return
		}
		wait = min(2*wait, historyReopenMax)
		g.log.Warn("history still off", "err", err, "retry_in", wait)
	}
}

func (g *Gateway) closeHistory() {
	h := &g.hist
	if h.stopReopen != nil {
		h.stopReopen()
		h.reopening.Wait()
		h.stopReopen = nil
	}
	h.mu.Lock()
	h.closed = true
	s := h.store.Swap(nil)
	h.mu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			g.log.Warn("closing history", "err", err)
		}
		h.setErr(fmt.Errorf("%w: the gateway is not running", fleet.ErrHistoryUnavailable))
	}
}

func (h *historyState) setErr(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

// open is the store, or the error saying why there is none.
func (h *historyState) open() (*history.Store, error) {
	if s := h.store.Load(); s != nil {
		return s, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return nil, fmt.Errorf("%w: the gateway is not running", fleet.ErrHistoryUnavailable)
	}
	return nil, h.err
}

// clock is the gateway's time as its node last saw it (virtual on a
// simulated mesh), else the machine's.
func (h *historyState) clock() time.Time {
	if ns := h.now.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Now()
}

func (h *historyState) tick(now time.Time) {
	if n := now.UnixNano(); n > h.now.Load() {
		h.now.Store(n)
	}
}

// NodeHistory implements fleet.History.
func (g *Gateway) NodeHistory(ctx context.Context, q fleet.SeriesQuery) (fleet.Series, error) {
	s, err := g.hist.open()
	if err != nil {
		return fleet.Series{}, err
	}
	return s.Series(ctx, q, g.hist.clock())
}

// Events implements fleet.History.
func (g *Gateway) Events(ctx context.Context, q fleet.EventQuery) ([]fleet.HistoryEvent, error) {
	s, err := g.hist.open()
	if err != nil {
		return nil, err
	}
	return s.Events(ctx, q, g.hist.clock())
}

// AlertHistory implements fleet.History.
func (g *Gateway) AlertHistory(ctx context.Context, q fleet.EventQuery) ([]fleet.Alert, error) {
	s, err := g.hist.open()
	if err != nil {
		return nil, err
	}
	out, err := s.Alerts(ctx, q, g.hist.clock())
	g.acks.applyAll(out)
	return out, err
}

// CampaignHistory implements fleet.History.
func (g *Gateway) CampaignHistory(ctx context.Context, limit int) ([]fleet.Campaign, error) {
	s, err := g.hist.open()
	if err != nil {
		return nil, err
	}
	return s.Campaigns(ctx, limit)
}

// Timing of the recorder, in the node's time.
const (
	// layoutSettle: a layout change is recorded once the layout has had
	// this long to settle (a join changes it several times in a row).
	layoutSettle = time.Second
	// campaignEvery: a running campaign's record (its per-node outcomes)
	// is rewritten at most this often; state changes are written at once.
	campaignEvery = 10 * time.Second
)

// historyRecorder is the node plugin that feeds the history from inside
// the node's loop, with the node's time: a sample for every status update
// the collector decodes, and the events (layout, nodes online and
// offline, alerts, campaigns). It only queues (history.Store.Add...), so
// the loop never waits for the database.
type historyRecorder struct {
	g *Gateway
	c *status.Collector
	d *ota.Distributor

	reboots map[uint32]int // the model's restart count at a node's previous sample

	layoutDirty bool
	layoutAt    time.Time // when to record the settled layout
	layout      map[uint32]bool

	campaigns map[string]*campaignSeen
}

type campaignSeen struct {
	state   ota.CampaignState
	nodes   map[uint32]ota.State // outcomes recorded
	dirty   bool
	written time.Time
}

func (g *Gateway) newHistoryRecorder(c *status.Collector, d *ota.Distributor) *historyRecorder {
	return &historyRecorder{g: g, c: c, d: d, reboots: map[uint32]int{}, layout: map[uint32]bool{}, campaigns: map[string]*campaignSeen{}}
}

// Attach implements mesh.Plugin.
func (r *historyRecorder) Attach(mesh.Host) {}

// Types implements mesh.Plugin: the recorder takes no packages.
func (r *historyRecorder) Types() []int { return nil }

// HandlePackage implements mesh.Plugin.
func (r *historyRecorder) HandlePackage(time.Time, mesh.ConnID, protocol.Header, []byte) {}

// NextDeadline implements mesh.Plugin.
func (r *historyRecorder) NextDeadline() time.Time {
	if r.layoutDirty {
		return r.layoutAt
	}
	return time.Time{}
}

// Tick implements mesh.Plugin.
func (r *historyRecorder) Tick(now time.Time) {
	r.g.hist.tick(now)
	s := r.g.hist.store.Load()
	if s == nil {
		return
	}
	if r.layoutDirty && !now.Before(r.layoutAt) {
		r.layoutDirty = false
		r.recordLayout(s, now)
	}
	for id, cs := range r.campaigns {
		if cs.dirty && now.Sub(cs.written) >= campaignEvery {
			r.recordCampaign(s, now, id)
		}
	}
}

// OnEvent implements mesh.EventObserver.
func (r *historyRecorder) OnEvent(now time.Time, ev mesh.Event) {
	r.g.hist.tick(now)
	s := r.g.hist.store.Load()
	if s == nil {
		return
	}
	switch e := ev.(type) {
	case status.NodeUpdated:
		r.sample(s, now, e.Node, &e.Metrics)
	case status.NodeOnline:
		word := "offline"
		if e.Online {
			word = "online"
		}
		data, _ := json.Marshal(map[string]any{"online": e.Online, "reason": e.Reason})
		s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "node", NodeID: e.Node, Summary: fmt.Sprintf("node %d %s (%s)", e.Node, word, e.Reason), Data: data})
	case status.AlertEvent:
		s.AddAlert(alertView(e.Alert), now.UTC())
	case ota.CampaignEvent:
		r.campaignEvent(s, now, e)
	case mesh.NewConnection:
		data, _ := json.Marshal(map[string]any{"neighbour": e.NodeID, "up": true})
		s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "topology", NodeID: e.NodeID, Summary: fmt.Sprintf("connection to node %d up", e.NodeID), Data: data})
		r.layoutChanged(now)
	case mesh.DroppedConnection:
		data, _ := json.Marshal(map[string]any{"neighbour": e.NodeID, "up": false, "reason": e.Reason})
		s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "topology", NodeID: e.NodeID, Summary: fmt.Sprintf("connection to node %d dropped (%s)", e.NodeID, e.Reason), Data: data})
		r.layoutChanged(now)
	case mesh.ChangedConnections:
		r.layoutChanged(now)
	}
}

func (r *historyRecorder) sample(s *history.Store, now time.Time, id uint32, m *status.Metrics) {
	x := history.Sample{Node: id, T: now, FreeMemory: m.FreeMemory, LatencyUs: m.LatencyUs, MessagesRx: m.MessagesRx,
		MessagesTx: m.MessagesTx, MessagesDropped: m.MessagesDropped, Uptime: m.Uptime, RSSI: m.RSSI, WiFi: m.WiFi,
		LossPermille: m.LossPermille, Connections: m.Connections, Hops: -1}
	if m.FreeMemory == math.MaxUint32 {
		x.FreeMemory = 0 // saturated: unknown, as in the node document
	}
	if h, ok := r.c.NodeHealth(id); ok {
		x.Health = h.Score
	}
	if st, ok := r.c.Model().Node(id); ok {
		x.Hops = st.Hops
		if prev, seen := r.reboots[id]; seen && st.Reboots > prev {
			x.Reboots = st.Reboots - prev
		}
		r.reboots[id] = st.Reboots
	}
	s.AddSample(x)
}

func (r *historyRecorder) layoutChanged(now time.Time) {
	if !r.layoutDirty {
		r.layoutDirty, r.layoutAt = true, now.Add(layoutSettle)
	}
}

// recordLayout records the layout's size and the nodes that joined or
// left it since the previous record.
func (r *historyRecorder) recordLayout(s *history.Store, now time.Time) {
	cur := map[uint32]bool{}
	for _, st := range r.c.Model().Nodes() {
		if st.InTopology {
			cur[st.ID] = true
		}
	}
	var joined, left []uint32
	for id := range cur {
		if !r.layout[id] {
			joined = append(joined, id)
		}
	}
	for id := range r.layout {
		if !cur[id] {
			left = append(left, id)
		}
	}
	r.layout = cur
	if len(joined) == 0 && len(left) == 0 {
		return
	}
	slices.Sort(joined)
	slices.Sort(left)
	data, _ := json.Marshal(map[string]any{"nodes": len(cur), "joined": orNone(joined), "left": orNone(left), "max_hops": r.c.Model().MaxHops()})
	s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "topology",
		Summary: fmt.Sprintf("layout changed: %d nodes, %d joined, %d left", len(cur), len(joined), len(left)), Data: data})
	for _, id := range joined {
		s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "node", NodeID: id, Summary: fmt.Sprintf("node %d joined the mesh", id)})
	}
	for _, id := range left {
		s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "node", NodeID: id, Summary: fmt.Sprintf("node %d left the mesh", id)})
	}
}

func orNone(ids []uint32) []uint32 {
	if ids == nil {
		return []uint32{}
	}
	return ids
}

// finalOutcome: a node's OTA state that ends its part in a campaign.
func finalOutcome(s ota.State) bool {
	switch s {
	case ota.StateConfirmed, ota.StateInstalled, ota.StateFailed, ota.StateRolledBack, ota.StateRefused, ota.StateLost:
		return true
	}
	return false
}

func (r *historyRecorder) campaignEvent(s *history.Store, now time.Time, e ota.CampaignEvent) {
	cs := r.campaigns[e.Campaign]
	if cs == nil {
		cs = &campaignSeen{nodes: map[uint32]ota.State{}}
		r.campaigns[e.Campaign] = cs
	}
	if e.Node != 0 {
		p := e.Progress
		if finalOutcome(p.State) && cs.nodes[e.Node] != p.State {
			cs.nodes[e.Node] = p.State
			cs.dirty = true
			data, _ := json.Marshal(progressView(e.Campaign, p))
			sum := fmt.Sprintf("node %d %s in campaign %s", e.Node, p.State, e.Campaign)
			if p.Err != "" {
				sum += ": " + p.Err
			}
			s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "ota", NodeID: e.Node, Summary: sum, Data: data})
		}
		return
	}
	if e.State == cs.state {
		cs.dirty = true
		return
	}
	cs.state = e.State
	v := r.recordCampaign(s, now, e.Campaign)
	data, _ := json.Marshal(map[string]any{"campaign": e.Campaign, "state": e.State, "reason": v.Reason,
		"completed": v.Completed, "failed": v.Failed, "total": v.Total, "image": v.Image.Version})
	sum := fmt.Sprintf("campaign %s %s", e.Campaign, e.State)
	if v.Image.Version != "" {
		sum += " (" + v.Image.Role + " " + v.Image.Version + ")"
	}
	if v.Reason != "" {
		sum += ": " + v.Reason
	}
	s.AddEvent(fleet.HistoryEvent{T: now.UTC(), Kind: "ota", Summary: sum, Data: data})
	if e.State != ota.CampaignRunning && e.State != ota.CampaignPaused {
		delete(r.campaigns, e.Campaign) // ended: its record is final
	}
}

// recordCampaign writes the campaign's record with its per-node outcomes.
func (r *historyRecorder) recordCampaign(s *history.Store, now time.Time, id string) fleet.Campaign {
	cp, ok := r.d.Campaign(id)
	if !ok {
		delete(r.campaigns, id)
		return fleet.Campaign{ID: id}
	}
	v := r.g.campaignView(cp.Snapshot())
	s.AddCampaign(v, now.UTC())
	if cs := r.campaigns[id]; cs != nil {
		cs.dirty, cs.written = false, now
	}
	return v
}

// auditTap is the gateway's log handler: every audit line (fleet.Audit,
// msg=audit) is also an "action" event of the history, stamped with the
// gateway's time, so the history answers who did what from which
// interface without each interface writing to it.
type auditTap struct {
	slog.Handler
	g *Gateway
}

// Handle implements slog.Handler.
func (t auditTap) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "audit" {
		t.g.recordAction(rec)
	}
	if !t.Handler.Enabled(ctx, rec.Level) {
		return nil
	}
	return t.Handler.Handle(ctx, rec)
}

// Enabled implements slog.Handler: audit lines are info, and recorded
// even when the log shows only warnings.
func (t auditTap) Enabled(ctx context.Context, l slog.Level) bool {
	return l == slog.LevelInfo || t.Handler.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler.
func (t auditTap) WithAttrs(as []slog.Attr) slog.Handler {
	return auditTap{Handler: t.Handler.WithAttrs(as), g: t.g}
}

// WithGroup implements slog.Handler.
func (t auditTap) WithGroup(name string) slog.Handler {
	return auditTap{Handler: t.Handler.WithGroup(name), g: t.g}
}

func (g *Gateway) recordAction(rec slog.Record) {
	s := g.hist.store.Load()
	if s == nil {
		return
	}
	a := map[string]string{}
	rec.Attrs(func(at slog.Attr) bool {
		a[at.Key] = at.Value.String()
		return true
	})
	data, _ := json.Marshal(a)
	sum := fmt.Sprintf("%s via %s: %s %s: %s", a["who"], a["via"], a["action"], a["target"], a["result"])
	s.AddEvent(fleet.HistoryEvent{T: g.hist.clock().UTC(), Kind: "action", Summary: sum, Data: data})
}
