package fleettest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// StartRollout implements fleet.Rollouts: it records the rollout as
// running, without the gateway's checks.
func (m *Memory) StartRollout(ctx context.Context, req fleet.RolloutRequest) (fleet.Rollout, error) {
	if err := m.check(ctx, "StartRollout"); err != nil {
		return fleet.Rollout{}, err
	}
	if req.Image == "" {
		return fleet.Rollout{}, fmt.Errorf("rollout needs an image: %w", fleet.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Rollouts == nil {
		m.Rollouts = map[string]*fleet.Rollout{}
	}
	m.nextID++
	id := cmp.Or(req.ID, fmt.Sprintf("r%d", m.nextID))
	if _, dup := m.Rollouts[id]; dup {
		return fleet.Rollout{}, fmt.Errorf("rollout id %q is already used: %w", id, fleet.ErrInvalid)
	}
	r := &fleet.Rollout{ID: id, State: "running", Waves: max(1, len(req.Plan.Waves)), Count: map[string]int{}}
	r.Spec.ID, r.Spec.Plan = id, req.Plan
	m.Rollouts[id] = r
	return *r, nil
}

// ListRollouts implements fleet.Rollouts.
func (m *Memory) ListRollouts(ctx context.Context) ([]fleet.Rollout, error) {
	if err := m.check(ctx, "ListRollouts"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []fleet.Rollout{}
	for _, id := range slices.Sorted(mapsKeys(m.Rollouts)) {
		out = append(out, *m.Rollouts[id])
	}
	return out, nil
}

func mapsKeys(m map[string]*fleet.Rollout) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// GetRollout implements fleet.Rollouts.
func (m *Memory) GetRollout(ctx context.Context, id string) (fleet.Rollout, error) {
	if err := m.check(ctx, "GetRollout"); err != nil {
		return fleet.Rollout{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.Rollouts[id]
	if !ok {
		return fleet.Rollout{}, fmt.Errorf("rollout %q: %w", id, fleet.ErrNotFound)
	}
	return *r, nil
}

// ControlRollout implements fleet.Rollouts: pause, resume and abort
// change the state; approve runs the next wave.
func (m *Memory) ControlRollout(ctx context.Context, id string, cmd fleet.RolloutCommand) (fleet.Rollout, error) {
	if err := m.check(ctx, "ControlRollout"); err != nil {
		return fleet.Rollout{}, err
	}
	if !slices.Contains(fleet.RolloutActions, cmd.Action) {
		return fleet.Rollout{}, fmt.Errorf("rollout action %q is not one of %s: %w", cmd.Action, strings.Join(fleet.RolloutActions, ", "), fleet.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.Rollouts[id]
	if !ok {
		return fleet.Rollout{}, fmt.Errorf("rollout %q: %w", id, fleet.ErrNotFound)
	}
	switch cmd.Action {
	case "pause":
		r.State = "paused"
	case "resume", "approve":
		r.State = "running"
	case "abort":
		r.State, r.Reason = "aborted", cmd.Reason
	}
	return *r, nil
}
