package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/rollout"
)

// Rollouts runs progressive rollouts (package rollout) on the fleet: an
// image installed on a set of nodes in waves judged from telemetry.
type Rollouts interface {
	// StartRollout starts (or queues behind an overlapping rollout) a
	// rollout. ErrInvalid names what is wrong with the request, including
	// a rollback policy for nodes whose previous image is not stored.
	StartRollout(ctx context.Context, req RolloutRequest) (Rollout, error)
	ListRollouts(ctx context.Context) ([]Rollout, error)
	GetRollout(ctx context.Context, id string) (Rollout, error)
	// ControlRollout runs an operator command on a rollout: pause,
	// resume, approve, or abort (with reason; rollback rolls its updated
	// nodes back).
	ControlRollout(ctx context.Context, id string, cmd RolloutCommand) (Rollout, error)
}

// RolloutCommand is an operator command on a rollout.
type RolloutCommand struct {
	Action   string `json:"action"` // pause | resume | approve | abort
	Reason   string `json:"reason,omitempty"`
	Rollback bool   `json:"rollback,omitempty"`
}

// RolloutActions are the commands ControlRollout takes.
var RolloutActions = []string{"pause", "resume", "approve", "abort"}

// RolloutTargets selects a rollout's nodes: every node of the image's role
// and hardware (or Role and Hardware), narrowed to Nodes and the nodes the
// registry's Tags (any of) and Names select, when given.
type RolloutTargets struct {
	Role     string   `json:"role,omitempty"`
	Hardware string   `json:"hardware,omitempty"`
	Nodes    []uint32 `json:"nodes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Names    []string `json:"names,omitempty"`
	// Outdated only says explicitly what every rollout does: nodes that
	// run the image already are skipped.
	Outdated bool `json:"outdated,omitempty"`
}

// RolloutRequest is a rollout as an operator asks for it: rollout.Spec
// with the image given by its store id or md5, targets that may name
// registry names, and durations in the plan written either as Go
// duration strings ("2m", "90s") or as nanoseconds.
type RolloutRequest struct {
	ID      string         `json:"id"`
	Image   string         `json:"image"` // image id or md5 in the firmware store
	Targets RolloutTargets `json:"targets"`
	Plan    rollout.Plan   `json:"plan"`
	Force   bool           `json:"force,omitempty"` // allow downgrades
	Overlap string         `json:"overlap,omitempty"`
	Reason  string         `json:"reason,omitempty"`
}

// UnmarshalJSON reads a request whose plan durations may be strings.
func (r *RolloutRequest) UnmarshalJSON(data []byte) error {
	type plain RolloutRequest
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	if p, ok := all["plan"]; ok {
		plan, err := planDurations(p)
		if err != nil {
			return err
		}
		all["plan"] = plan
		if data, err = json.Marshal(all); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = RolloutRequest(p)
	return nil
}

// planDurations rewrites the plan's string durations as the nanoseconds
// rollout.Plan reads, naming the field of one that does not parse.
func planDurations(plan json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(plan, &m) != nil || m == nil {
		return plan, nil // not an object: the decoder says so
	}
	if err := nanos(m, "plan.", "soak", "update_timeout", "linger"); err != nil {
		return nil, err
	}
	if g, ok := m["gates"]; ok {
		var gm map[string]json.RawMessage
		if json.Unmarshal(g, &gm) == nil && gm != nil {
			if err := nanos(gm, "plan.gates.", "offline_grace", "baseline_wait"); err != nil {
				return nil, err
			}
			m["gates"], _ = json.Marshal(gm)
		}
	}
	return json.Marshal(m)
}

func nanos(m map[string]json.RawMessage, prefix string, keys ...string) error {
	for _, k := range keys {
		var s string
		if v, ok := m[k]; !ok || json.Unmarshal(v, &s) != nil {
			continue // absent, or a number: nanoseconds as they are
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s%s %q: want a duration like \"90s\" or \"2m\"", prefix, k, s)
		}
		m[k] = json.RawMessage(fmt.Sprint(int64(d)))
	}
	return nil
}

// Rollout is a rollout as the gateway reports it.
type Rollout struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Wave is the current wave (0 the canary) of Waves.
	Wave  int                  `json:"wave"`
	Waves int                  `json:"waves"`
	Spec  rollout.Spec         `json:"spec"`
	Count map[string]int       `json:"count"` // nodes by state
	Nodes []rollout.NodeStatus `json:"nodes,omitempty"`
	// Event is set on a stream event: the transition that changed it.
	Event *rollout.Event `json:"event,omitempty"`
}
