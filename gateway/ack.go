package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// acksFile keeps alert acknowledgements in state_dir next to alerts.json:
// the alert engine knows nothing of operators.
const acksFile = "alert_acks.json"

// alertAck is one acknowledgement. It belongs to one occurrence of an
// alert (its id and the time it was raised): when the condition clears
// and comes back, the new alert is not acknowledged.
type alertAck struct {
	ID     string    `json:"alert_id"`
	Raised time.Time `json:"raised_at"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// ackBook holds the latest acknowledgements (maxAcks), one per alert id:
// the live alerts and the alert history show them.
type ackBook struct {
	path string
	mu   sync.Mutex
	acks map[string]alertAck // by alert id
}

// loadAcks reads the saved acknowledgements; a corrupt file is an error
// that names it, as for the other state files.
func loadAcks(stateDir string) (*ackBook, error) {
	b := &ackBook{path: filepath.Join(stateDir, acksFile), acks: map[string]alertAck{}}
	data, err := os.ReadFile(b.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	}
	var list []alertAck
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (%v); move it away to start without alert acknowledgements", b.path, err)
	}
	for _, a := range list {
		b.acks[a.ID] = a
	}
	return b, nil
}

// apply adds its acknowledgement to a, if that occurrence has one.
func (b *ackBook) apply(a fleet.Alert) fleet.Alert {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.acks[a.ID]; ok && k.Raised.Equal(a.Raised) {
		at := k.At
		a.AckedBy, a.AckedAt = k.By, &at
	}
	return a
}

func (b *ackBook) applyAll(as []fleet.Alert) {
	for i := range as {
		as[i] = b.apply(as[i])
	}
}

// maxAcks bounds the book: the newest acknowledgements are kept, enough
// for every alert the engine remembers and the recent alert history.
const maxAcks = 1000

// add records the acknowledgement of a by by at now and saves the book.
// An alert already acknowledged keeps its first acknowledgement.
func (b *ackBook) add(a fleet.Alert, by string, now time.Time) (fleet.Alert, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.acks[a.ID]; ok && k.Raised.Equal(a.Raised) {
		at := k.At
		a.AckedBy, a.AckedAt = k.By, &at
		return a, nil
	}
	list := make([]alertAck, 0, len(b.acks)+1)
	for id, k := range b.acks {
		if id != a.ID {
			list = append(list, k)
		}
	}
	list = append(list, alertAck{ID: a.ID, Raised: a.Raised, By: by, At: now.UTC()})
	slices.SortFunc(list, func(x, y alertAck) int { return y.At.Compare(x.At) })
	list = list[:min(len(list), maxAcks)]
	if err := writeJSONFile(b.path, list); err != nil {
		return fleet.Alert{}, fmt.Errorf("saving the acknowledgement: %w", err)
	}
	next := make(map[string]alertAck, len(list))
	for _, k := range list {
		next[k.ID] = k
	}
	b.acks = next
	at := now.UTC()
	a.AckedBy, a.AckedAt = by, &at
	return a, nil
}

// AckAlert implements fleet.AlertAcker: the active occurrence of id, else
// its latest cleared one. Subscribers see the acknowledged alert.
func (g *Gateway) AckAlert(ctx context.Context, id, by string) (fleet.Alert, error) {
	all, err := g.Alerts(ctx, true)
	if err != nil {
		return fleet.Alert{}, err
	}
	var found *fleet.Alert
	for i := range all {
		a := &all[i]
		if a.ID != id {
			continue
		}
		if found == nil || (found.Cleared != nil && (a.Cleared == nil || a.Raised.After(found.Raised))) {
			found = a
		}
	}
	if found == nil {
		return fleet.Alert{}, fmt.Errorf("alert %q: %w", id, fleet.ErrNotFound)
	}
	if by == "" {
		return fleet.Alert{}, fmt.Errorf("acknowledging alert %q: who acknowledges it is not said: %w", id, fleet.ErrInvalid)
	}
	a, err := g.acks.add(*found, by, time.Now())
	if err != nil {
		return fleet.Alert{}, err
	}
	g.fan.publish(fleet.Event{Alert: &a})
	return a, nil
}
