package linuxnode

import (
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// OTA lifecycle states of an OTAEvent besides the receiver's own
// (ota.State: downloading, verifying, switching, confirmed, failed,
// rolled_back, refused).
const (
	// StateIdle: the node started normally; the event names the image it
	// runs.
	StateIdle = "idle"
	// StateSwitched: a verified image waits in slot_path and runs on
	// trial at the next start of the node.
	StateSwitched = "switched"
	// StateTrial: the node started a switched image on trial; it must
	// join the mesh before deadline or the image rolls back.
	StateTrial = "trial"
)

// OTAEvent is the node's OTA progress and lifecycle, one JSON line
// ("event":"ota") on the node's console.
//
// Slot and SlotPath name the slot the event is about: the running image
// for idle, trial and confirmed; the image waiting to run for switched;
// the image restored for rolled_back (SlotPath is empty when that is the
// factory image, which has no file). MD5 and Version are the image being
// downloaded, switched to, run, confirmed or rolled back.
type OTAEvent struct {
	mesh.EventBase
	Node     uint32    `json:"node"`
	State    string    `json:"state"`
	Transfer string    `json:"transfer,omitempty"`
	Mode     string    `json:"mode,omitempty"`
	MD5      string    `json:"md5,omitempty"`
	Version  string    `json:"version,omitempty"`
	Chunks   int       `json:"chunks"`   // chunks held
	Total    int       `json:"total"`    // chunks in the transfer
	Bytes    int64     `json:"bytes"`    // transfer bytes held
	Rate     float64   `json:"rate_bps"` // transfer bytes per second so far
	ETA      float64   `json:"eta_s"`    // seconds left at that rate
	Slot     string    `json:"slot,omitempty"`
	SlotPath string    `json:"slot_path,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"` // trial: confirm by
	Reason   string    `json:"reason,omitempty"`  // failed, rolled_back, refused
}

// EventName is the console's "event" value.
func (OTAEvent) EventName() string { return "ota" }

// Hook actions.
const (
	ActionSwitch   = "switch"
	ActionRollback = "rollback"
)

// HookEvent reports a finished --on-switch or --on-rollback command
// ("event":"ota_hook").
type HookEvent struct {
	mesh.EventBase
	Action   string   `json:"action"` // switch | rollback
	Command  []string `json:"command"`
	SlotPath string   `json:"slot_path,omitempty"`
	MD5      string   `json:"md5,omitempty"`
	ExitCode int      `json:"exit_code"` // -1 when it did not run or was killed
	Seconds  float64  `json:"seconds"`
	Error    string   `json:"error,omitempty"`
	// Output is the end of what the command wrote (stdout and stderr).
	Output string `json:"output,omitempty"`
}

// EventName is the console's "event" value.
func (HookEvent) EventName() string { return "ota_hook" }
