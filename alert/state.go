package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// stateVersion is the version of the persisted state format.
const stateVersion = 1

// savedState is the persisted form of an Engine.
type savedState struct {
	Version int          `json:"version"`
	Active  []Alert      `json:"active"`
	Recent  []Alert      `json:"recent"`
	Nodes   []*nodeState `json:"nodes"`
}

// ErrState is wrapped by Restore's errors.
var ErrState = errors.New("alert: invalid alert state")

// MarshalJSON writes the engine's whole state (alerts, per-node rule and
// baseline state) so a gateway can persist it and Restore it after a
// restart.
func (e *Engine) MarshalJSON() ([]byte, error) {
	st := savedState{Version: stateVersion, Active: e.Active(), Recent: e.Recent()}
	for _, id := range e.nodeIDs() {
		st.Nodes = append(st.Nodes, e.nodes[id])
	}
	return json.Marshal(st)
}

// Restore replaces the engine's state with one written by MarshalJSON. On
// error the engine is unchanged.
func (e *Engine) Restore(data []byte) error {
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrState, st.Version, stateVersion)
	}
	nodes := make(map[uint32]*nodeState, len(st.Nodes))
	for _, n := range st.Nodes {
		if n == nil {
			return fmt.Errorf("%w: null node entry", ErrState)
		}
		if _, dup := nodes[n.Node]; dup {
			return fmt.Errorf("%w: node %d listed twice", ErrState, n.Node)
		}
		if n.Streaks == nil {
			n.Streaks = make(map[string]*streak)
		}
		for name, s := range n.Streaks {
			if s == nil || s.Bad < 0 || s.Good < 0 {
				return fmt.Errorf("%w: node %d: bad streak %q", ErrState, n.Node, name)
			}
		}
		for _, w := range []*EWMA{&n.Drop, &n.Memory} {
			if w.N < 0 || w.Var < 0 {
				return fmt.Errorf("%w: node %d: bad baseline %+v", ErrState, n.Node, *w)
			}
		}
		if !slices.IsSortedFunc(n.Resets, func(a, b time.Time) int { return a.Compare(b) }) {
			return fmt.Errorf("%w: node %d: restarts out of order", ErrState, n.Node)
		}
		nodes[n.Node] = n
	}
	active := make(map[alertKey]*Alert, len(st.Active))
	for i := range st.Active {
		a := st.Active[i]
		if err := checkAlert(&a); err != nil {
			return err
		}
		if !a.Active {
			return fmt.Errorf("%w: alert %s listed as active is cleared", ErrState, a.ID)
		}
		key := alertKey{a.Node, a.Kind, a.Metric}
		if active[key] != nil {
			return fmt.Errorf("%w: alert %s listed twice", ErrState, a.ID)
		}
		active[key] = &a
	}
	for i := range st.Recent {
		if err := checkAlert(&st.Recent[i]); err != nil {
			return err
		}
	}
	if over := len(st.Recent) - e.cfg.RecentSize; over > 0 {
		st.Recent = st.Recent[over:]
	}
	e.nodes, e.active, e.recent = nodes, active, st.Recent
	return nil
}

func checkAlert(a *Alert) error {
	if a.Kind < 1 || int(a.Kind) > numKinds {
		return fmt.Errorf("%w: alert %q has kind %d", ErrState, a.ID, a.Kind)
	}
	if (a.Kind == KindAnomaly) != (a.Metric != "") {
		return fmt.Errorf("%w: alert %q: metric %q with kind %s", ErrState, a.ID, a.Metric, a.Kind)
	}
	if want := alertID(alertKey{a.Node, a.Kind, a.Metric}); a.ID != want {
		return fmt.Errorf("%w: alert id %q, want %q", ErrState, a.ID, want)
	}
	return nil
}
