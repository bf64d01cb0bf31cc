package history

import (
	"context"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// Service is the store as a fleet.History whose default ranges end at
// clock() (the gateway has its own; a fake fleet uses this).
func (s *Store) Service(clock func() time.Time) fleet.History { return service{s, clock} }

type service struct {
	s     *Store
	clock func() time.Time
}

func (v service) NodeHistory(ctx context.Context, q fleet.SeriesQuery) (fleet.Series, error) {
	return v.s.Series(ctx, q, v.clock())
}

func (v service) Events(ctx context.Context, q fleet.EventQuery) ([]fleet.HistoryEvent, error) {
	return v.s.Events(ctx, q, v.clock())
}

func (v service) AlertHistory(ctx context.Context, q fleet.EventQuery) ([]fleet.Alert, error) {
	return v.s.Alerts(ctx, q, v.clock())
}

func (v service) CampaignHistory(ctx context.Context, limit int) ([]fleet.Campaign, error) {
	return v.s.Campaigns(ctx, limit)
}
