package fleettest

import (
	"context"

	"github.com/meshfleet/meshfleet/fleet"
)

func (m *Memory) history() (fleet.History, error) {
	m.mu.Lock()
	h := m.History
	m.mu.Unlock()
	if h == nil {
		return nil, fleet.ErrHistoryUnavailable
	}
	return h, nil
}

// NodeHistory implements fleet.History with m.History.
func (m *Memory) NodeHistory(ctx context.Context, q fleet.SeriesQuery) (fleet.Series, error) {
	h, err := m.history()
	if err != nil {
		return fleet.Series{}, err
	}
	return h.NodeHistory(ctx, q)
}

// Events implements fleet.History with m.History.
func (m *Memory) Events(ctx context.Context, q fleet.EventQuery) ([]fleet.HistoryEvent, error) {
	h, err := m.history()
	if err != nil {
		return nil, err
	}
	return h.Events(ctx, q)
}

// AlertHistory implements fleet.History with m.History.
func (m *Memory) AlertHistory(ctx context.Context, q fleet.EventQuery) ([]fleet.Alert, error) {
	h, err := m.history()
	if err != nil {
		return nil, err
	}
	return h.AlertHistory(ctx, q)
}

// CampaignHistory implements fleet.History with m.History.
func (m *Memory) CampaignHistory(ctx context.Context, limit int) ([]fleet.Campaign, error) {
	h, err := m.history()
	if err != nil {
		return nil, err
	}
	return h.CampaignHistory(ctx, limit)
}
