package fleettest

import (
	"context"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// AckAlert implements fleet.AlertAcker on the alert list: the last alert
// with id, acknowledged once.
func (m *Memory) AckAlert(ctx context.Context, id, by string) (fleet.Alert, error) {
	if err := m.check(ctx, "AckAlert"); err != nil {
		return fleet.Alert{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.AlertList) - 1; i >= 0; i-- {
		a := &m.AlertList[i]
		if a.ID != id {
			continue
		}
		if a.AckedAt == nil {
			now := time.Now().UTC()
			a.AckedBy, a.AckedAt = by, &now
		}
		return *a, nil
	}
	return fleet.Alert{}, fmt.Errorf("alert %q: %w", id, fleet.ErrNotFound)
}
