package rollout

import (
	"fmt"
	"slices"
)

// Forget drops a rollout that is over, so that a long-running caller can
// bound how many it keeps; an active or waiting one is ErrState.
func (m *Manager) Forget(id string) error {
	i := slices.IndexFunc(m.rollouts, func(r *Rollout) bool { return r.ID() == id })
	if i < 0 {
		return fmt.Errorf("%w %q", ErrNoRollout, id)
	}
	if s := m.rollouts[i].s.State; !s.Final() {
		return fmt.Errorf("%w: forget a %s rollout (only one that is over)", ErrState, s)
	}
	m.rollouts = slices.Delete(m.rollouts, i, i+1)
	return nil
}
