package fleettest

import (
	"context"
	"fmt"
	"slices"

	"github.com/meshfleet/meshfleet/fleet"
)

// UpdateNode implements fleet.Registry on the node list, without the
// gateway's bounds.
func (m *Memory) UpdateNode(ctx context.Context, id uint32, p fleet.NodePatch) (fleet.Node, error) {
	if err := m.check(ctx, "UpdateNode"); err != nil {
		return fleet.Node{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.NodeList {
		n := &m.NodeList[i]
		if n.ID != id {
			continue
		}
		if p.Name != nil {
			n.Name = *p.Name
		}
		if p.Tags != nil {
			n.Tags = slices.Clone(*p.Tags)
		}
		if p.Notes != nil {
			n.Notes = *p.Notes
		}
		return *n, nil
	}
	return fleet.Node{}, fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
}

// ForgetNode implements fleet.Registry: the node leaves the node list.
func (m *Memory) ForgetNode(ctx context.Context, id uint32, force bool) error {
	if err := m.check(ctx, "ForgetNode"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.NodeList, func(n fleet.Node) bool { return n.ID == id })
	if i < 0 {
		return fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
	}
	if m.NodeList[i].Status == "online" && !force {
		return fmt.Errorf("node %d is online: %w", id, fleet.ErrConflict)
	}
	m.NodeList = slices.Delete(m.NodeList, i, i+1)
	delete(m.FirmwareLog, id)
	return nil
}

// NodeFirmware implements fleet.Registry from FirmwareLog.
func (m *Memory) NodeFirmware(ctx context.Context, id uint32) (fleet.FirmwareHistory, error) {
	if err := m.check(ctx, "NodeFirmware"); err != nil {
		return fleet.FirmwareHistory{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.ContainsFunc(m.NodeList, func(n fleet.Node) bool { return n.ID == id }) {
		return fleet.FirmwareHistory{}, fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
	}
	return fleet.FirmwareHistory{NodeID: id, Firmware: append([]fleet.FirmwareRecord{}, m.FirmwareLog[id]...)}, nil
}
