package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Manager runs several rollouts at once. Rollouts hold disjoint nodes: a
// rollout whose targets overlap an active one waits until that one is over
// (OverlapWait), or supersedes it (OverlapSupersede), and both record why.
// Inputs go to every rollout; Ready gathers their outputs.
type Manager struct {
	rollouts []*Rollout // in the order they were started
	// waiting is what a waiting rollout was created from, to start it
	// when its nodes are free.
	waiting map[string]pending
}

type pending struct {
	Spec  Spec       `json:"spec"`
	Nodes []NodeInfo `json:"nodes"`
	Topo  Topology   `json:"topology"`
}

// ErrNoRollout reports a rollout id the manager does not know.
var ErrNoRollout = errors.New("rollout: no such rollout")

// NewManager returns a manager with no rollouts.
func NewManager() *Manager { return &Manager{waiting: map[string]pending{}} }

// Rollouts is every rollout, the oldest first.
func (m *Manager) Rollouts() []*Rollout { return m.rollouts }

// Get returns a rollout by id.
func (m *Manager) Get(id string) (*Rollout, bool) {
	for _, r := range m.rollouts {
		if r.ID() == id {
			return r, true
		}
	}
	return nil, false
}

// Start creates a rollout; see New. It waits, or supersedes the rollouts
// that hold some of its nodes, as its spec's Overlap says.
func (m *Manager) Start(now time.Time, spec Spec, nodes []NodeInfo, topo Topology) (*Rollout, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if _, dup := m.Get(spec.ID); dup {
		return nil, fmt.Errorf("%w: id %q is already used", ErrSpec, spec.ID)
	}
	r, err := New(now, spec, nodes, topo)
	if err != nil {
		return nil, err
	}
	holders := m.holders(r)
	if len(holders) > 0 && spec.Overlap == OverlapWait {
		// Start it again from scratch when its nodes are free: by then
		// some may be up to date.
		w := &Rollout{s: snapshot{Spec: r.s.Spec, State: StateWaiting, Created: now, Nodes: map[uint32]*node{}}}
		w.setTopology(topo)
		w.event(now, Event{Kind: EventState, To: string(StateWaiting), Reason: "waits for rollout " + holders[0].ID() + ", which holds some of its nodes"})
		w.s.Reason = "waits for rollout " + holders[0].ID()
		m.waiting[spec.ID] = pending{Spec: spec, Nodes: nodes, Topo: topo}
		m.rollouts = append(m.rollouts, w)
		return w, nil
	}
	for _, h := range holders {
		why := "superseded by rollout " + spec.ID
		if spec.Reason != "" {
			why += ": " + spec.Reason
		}
		h.supersede(now, why)
	}
	m.rollouts = append(m.rollouts, r)
	return r, nil
}

// holders are the active rollouts with work left on r's nodes.
func (m *Manager) holders(r *Rollout) []*Rollout {
	var out []*Rollout
	for _, o := range m.rollouts {
		if o.s.State.Final() || o.s.State == StateWaiting {
			continue
		}
		for id, n := range r.s.Nodes {
			if n.State != NodeSkipped && o.holds(id) {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// wake starts the waiting rollouts whose nodes are free now, oldest first.
func (m *Manager) wake(now time.Time) {
	for i, w := range m.rollouts {
		p, ok := m.waiting[w.ID()]
		if !ok || w.s.State != StateWaiting {
			continue
		}
		r, err := New(now, p.Spec, p.Nodes, p.Topo)
		if err != nil {
			continue // it was valid when it started waiting
		}
		if len(m.holders(r)) > 0 {
			continue
		}
		delete(m.waiting, w.ID())
		// Its events so far, then the fresh start's.
		r.ready.Events = append(w.ready.Events, r.ready.Events...)
		r.s.Created = w.s.Created
		m.rollouts[i] = r
	}
}

func (m *Manager) each(now time.Time, f func(r *Rollout)) {
	for _, r := range m.rollouts {
		if r.s.State != StateWaiting {
			f(r)
		}
	}
	m.wake(now)
}

// Observe, Outcome, Joined, Left, SetTopology and Tick pass an input to
// every rollout.
func (m *Manager) Observe(now time.Time, s Sample) {
	if s.MD5 != "" {
		m.runs(s.Node, strings.ToLower(s.MD5))
	}
	m.each(now, func(r *Rollout) { r.Observe(now, s) })
}

func (m *Manager) Outcome(now time.Time, o Outcome) {
	if o.State == OutcomeConfirmed {
		m.runs(o.Node, o.MD5)
	}
	m.each(now, func(r *Rollout) { r.Outcome(now, o) })
}

// runs notes the image a node runs for the rollouts that wait: they start
// with what is known then.
func (m *Manager) runs(id uint32, md5 string) {
	for wid, p := range m.waiting {
		for i, n := range p.Nodes {
			if n.ID == id && n.MD5 != md5 {
				p.Nodes = slices.Clone(p.Nodes)
				p.Nodes[i].MD5, p.Nodes[i].Version = md5, ""
				for _, r := range m.rollouts {
					if img := r.s.Spec.Image; img.MD5 == md5 {
						p.Nodes[i].Version = img.Version
					}
				}
				m.waiting[wid] = p
			}
		}
	}
}

func (m *Manager) Joined(now time.Time, info NodeInfo) {
	m.each(now, func(r *Rollout) { r.Joined(now, info) })
	// A waiting rollout starts with what is known when it starts.
	for id, p := range m.waiting {
		p.Nodes = appendOrReplace(p.Nodes, info)
		m.waiting[id] = p
	}
}

func appendOrReplace(nodes []NodeInfo, info NodeInfo) []NodeInfo {
	for i := range nodes {
		if nodes[i].ID == info.ID {
			out := append([]NodeInfo(nil), nodes...)
			out[i] = info
			return out
		}
	}
	return append(append([]NodeInfo(nil), nodes...), info)
}

func (m *Manager) Left(now time.Time, id uint32) {
	m.each(now, func(r *Rollout) { r.Left(now, id) })
}

func (m *Manager) SetTopology(now time.Time, t Topology) {
	m.each(now, func(r *Rollout) { r.SetTopology(now, t) })
	for id, p := range m.waiting {
		p.Topo = t
		m.waiting[id] = p
	}
}

func (m *Manager) Tick(now time.Time) { m.each(now, func(r *Rollout) { r.Tick(now) }) }

// command runs an operator command on one rollout.
func (m *Manager) command(now time.Time, id string, f func(r *Rollout) error) error {
	r, ok := m.Get(id)
	if !ok {
		return fmt.Errorf("%w %q", ErrNoRollout, id)
	}
	if err := f(r); err != nil {
		return err
	}
	m.wake(now)
	return nil
}

func (m *Manager) Pause(now time.Time, id string) error {
	return m.command(now, id, func(r *Rollout) error { return r.Pause(now) })
}

func (m *Manager) Resume(now time.Time, id string) error {
	return m.command(now, id, func(r *Rollout) error { return r.Resume(now) })
}

func (m *Manager) Approve(now time.Time, id string) error {
	return m.command(now, id, func(r *Rollout) error { return r.Approve(now) })
}

// Abort stops a rollout; a waiting one ends without starting.
func (m *Manager) Abort(now time.Time, id, reason string, rollback bool) error {
	return m.command(now, id, func(r *Rollout) error {
		if r.s.State == StateWaiting {
			delete(m.waiting, id)
			r.setState(now, StateAborted, reason)
			return nil
		}
		return r.Abort(now, reason, rollback)
	})
}

// Ready gathers every rollout's outputs.
func (m *Manager) Ready() Ready {
	var out Ready
	for _, r := range m.rollouts {
		out.Actions = append(out.Actions, r.ready.Actions...)
		out.Events = append(out.Events, r.ready.Events...)
	}
	return out
}

// Advance says the caller took the last Ready.
func (m *Manager) Advance() {
	for _, r := range m.rollouts {
		r.Advance()
	}
}

// NextDeadline is the earliest of the rollouts' deadlines.
func (m *Manager) NextDeadline() time.Time {
	var next time.Time
	for _, r := range m.rollouts {
		if t := r.NextDeadline(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

type managerSnapshot struct {
	Rollouts []json.RawMessage  `json:"rollouts"`
	Waiting  map[string]pending `json:"waiting,omitempty"`
}

// Snapshot is every rollout's state as JSON.
func (m *Manager) Snapshot() ([]byte, error) {
	s := managerSnapshot{Waiting: m.waiting}
	for _, r := range m.rollouts {
		b, err := r.Snapshot()
		if err != nil {
			return nil, err
		}
		s.Rollouts = append(s.Rollouts, b)
	}
	return json.Marshal(s)
}

// RestoreManager rebuilds a manager from Snapshot's JSON; see Restore.
func RestoreManager(now time.Time, data []byte) (*Manager, error) {
	var s managerSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("rollout: restore: %w", err)
	}
	m := NewManager()
	for id, p := range s.Waiting {
		m.waiting[id] = p
	}
	for _, b := range s.Rollouts {
		r, err := Restore(now, b)
		if err != nil {
			return nil, err
		}
		if _, dup := m.Get(r.ID()); dup {
			return nil, fmt.Errorf("rollout: restore: rollout %q twice", r.ID())
		}
		m.rollouts = append(m.rollouts, r)
	}
	m.wake(now)
	return m, nil
}
