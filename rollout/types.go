package rollout

import "time"

// State is where a rollout stands.
type State string

// Rollout states. Completed, failed, aborted and superseded are final.
const (
	// StateWaiting: an active rollout holds some of its nodes.
	StateWaiting State = "waiting"
	// StateRunning starts and judges waves.
	StateRunning State = "running"
	// StateAwaitingApproval: a wave passed; the next starts on Approve.
	StateAwaitingApproval State = "awaiting_approval"
	// StatePaused starts nothing new; running updates finish and are
	// judged.
	StatePaused State = "paused"
	// StateStopping: failures passed the threshold (or an abort asked for
	// a rollback); updated nodes are being rolled back.
	StateStopping  State = "stopping"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateAborted   State = "aborted"
	// StateSuperseded: a later rollout for some of the same nodes took
	// over (Reason names it).
	StateSuperseded State = "superseded"
)

// Final reports whether a rollout in state s is over.
func (s State) Final() bool {
	return s == StateCompleted || s == StateFailed || s == StateAborted || s == StateSuperseded
}

// NodeState is where one node of a rollout stands.
type NodeState string

const (
	NodePending     NodeState = "pending"  // in a wave, not started
	NodeUpdating    NodeState = "updating" // its OTA was asked for
	NodeSoaking     NodeState = "soaking"  // confirmed the image; watched until its soak ends
	NodePassed      NodeState = "passed"   // kept every gate through its soak
	NodeUpdated     NodeState = "updated"  // confirmed after the rollout stopped: not judged
	NodeFailed      NodeState = "failed"
	NodeRollingBack NodeState = "rolling_back"
	// NodeRollbackQueued: to be rolled back once the mesh can spare it
	// (the same order as updates: leaves first, never with a relay on its
	// path).
	NodeRollbackQueued NodeState = "rollback_queued"
	NodeRolledBack     NodeState = "rolled_back"
	NodeSkipped        NodeState = "skipped"   // up to date, a refused downgrade, or not a target
	NodeCancelled      NodeState = "cancelled" // its update was cancelled when the rollout stopped
)

// inFlight: the node may be rebooting because of this rollout.
func (s NodeState) inFlight() bool { return s == NodeUpdating || s == NodeRollingBack }

// settled: nothing more will happen to the node in this rollout unless an
// outcome still arrives.
func (s NodeState) settled() bool {
	return s == NodePassed || s == NodeUpdated || s == NodeFailed || s == NodeRolledBack || s == NodeSkipped || s == NodeCancelled
}

// NodeInfo is what the caller knows of a node when a rollout starts or
// the node joins.
type NodeInfo struct {
	ID       uint32   `json:"id"`
	Role     string   `json:"role,omitempty"`
	Hardware string   `json:"hardware,omitempty"`
	Version  string   `json:"version,omitempty"`
	MD5      string   `json:"md5,omitempty"` // the image it runs ("" unknown)
	Tags     []string `json:"tags,omitempty"`
	Online   bool     `json:"online"`
}

// Sample is one telemetry reading of a node.
type Sample struct {
	Node   uint32        `json:"node"`
	Online bool          `json:"online"`
	Uptime time.Duration `json:"uptime"`
	// FreeMemory in bytes (0: not reported).
	FreeMemory uint32 `json:"free_memory,omitempty"`
	// Dropped counts messages the node dropped since it booted.
	Dropped uint64 `json:"dropped,omitempty"`
	// CriticalAlerts is how many critical alerts are open on the node.
	CriticalAlerts int `json:"critical_alerts,omitempty"`
	// MD5 is the image it runs, confirmed ("" while on trial or not
	// reported). It stands for a lost outcome: a node that updates and
	// reports the new image confirmed has confirmed it.
	MD5 string `json:"md5,omitempty"`
}

// Topology is the mesh as a tree: each node's parent on its path to Root.
type Topology struct {
	Root   uint32            `json:"root"`
	Parent map[uint32]uint32 `json:"parent"`
}

// OutcomeState is a node's final answer to an update or rollback.
type OutcomeState string

const (
	OutcomeConfirmed  OutcomeState = "confirmed"   // runs the image and confirmed it
	OutcomeRolledBack OutcomeState = "rolled_back" // its A/B slots fell back (self test failed, crash)
	OutcomeRefused    OutcomeState = "refused"     // will not install it (signature, counter)
	OutcomeFailed     OutcomeState = "failed"      // the transfer gave up
)

// Outcome is a node's answer to the transfer of image MD5.
type Outcome struct {
	Node  uint32       `json:"node"`
	MD5   string       `json:"md5"`
	State OutcomeState `json:"state"`
	Error string       `json:"error,omitempty"`
}

// ActionKind is what an action asks the caller to do.
type ActionKind string

const (
	// ActionUpdate: transfer Image to Nodes (and keep transferring it to
	// the nodes of earlier update actions that have no outcome yet).
	ActionUpdate ActionKind = "update"
	// ActionRollback: install Image, their previous one, on Nodes again.
	ActionRollback ActionKind = "rollback"
	// ActionCancel: stop transferring to Nodes, whichever image (an
	// update, or a rollback a superseding rollout takes over).
	ActionCancel ActionKind = "cancel"
)

// Action is one thing for the caller to carry out.
type Action struct {
	Kind    ActionKind `json:"kind"`
	Rollout string     `json:"rollout"`
	Image   Image      `json:"image"`
	Nodes   []uint32   `json:"nodes"`
	Forced  bool       `json:"forced,omitempty"`
}

// Event kinds.
const (
	EventState       = "state"        // the rollout's state changed (From, To, Reason)
	EventWaveStarted = "wave_started" // Wave began
	EventWavePassed  = "wave_passed"  // every node of Wave kept its gates through the soak
	EventNode        = "node"         // Node changed state (From, To, Reason)
	EventWindow      = "window"       // the maintenance window holds new updates back (Reason)
)

// Event is a transition to publish (MQTT, REST, history).
type Event struct {
	At      time.Time `json:"at"`
	Rollout string    `json:"rollout"`
	Kind    string    `json:"kind"`
	Wave    int       `json:"wave"`
	Node    uint32    `json:"node,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Ready is what the caller must do and publish now.
type Ready struct {
	Actions []Action `json:"actions,omitempty"`
	Events  []Event  `json:"events,omitempty"`
}

// Empty reports whether there is nothing to do.
func (r Ready) Empty() bool { return len(r.Actions) == 0 && len(r.Events) == 0 }
