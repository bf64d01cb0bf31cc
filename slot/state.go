package slot

import (
	"encoding/json"
	"fmt"
	"time"
)

// Slot names one of the two image slots.
type Slot string

// The two slots.
const (
	A Slot = "A"
	B Slot = "B"
)

// Other returns the other slot.
func (s Slot) Other() Slot {
	if s == A {
		return B
	}
	return A
}

func (s Slot) valid() bool { return s == A || s == B }

// file returns the storage name of the slot's image.
func (s Slot) file() string {
	if s == A {
		return slotAFile
	}
	return slotBFile
}

// Info identifies an image.
type Info struct {
	MD5      string `json:"md5"` // of the uncompressed image; "" for an unknown factory image
	Version  string `json:"version,omitempty"`
	Role     string `json:"role,omitempty"`
	Hardware string `json:"hardware,omitempty"`
	Size     int64  `json:"size,omitempty"`
	// Counter is the image's security counter (0: none).
	Counter uint64 `json:"counter,omitempty"`
}

// SlotStatus is what a slot holds.
type SlotStatus string

// Slot states.
const (
	// Empty: nothing was ever written here.
	Empty SlotStatus = "empty"
	// Good: a confirmed image (the active one, or the previous one kept
	// for manual fallback).
	Good SlotStatus = "good"
	// Writing: Finish is (or was, when it crashed) writing an image here.
	// Never bootable.
	Writing SlotStatus = "writing"
	// Ready: a verified image that may be switched to; while it is the
	// pending slot it runs on trial.
	Ready SlotStatus = "ready"
	// Bad: verification failed or the image rolled back; Reason says why.
	Bad SlotStatus = "bad"
)

// SlotState is the state of one slot.
type SlotState struct {
	Status SlotStatus `json:"status"`
	Image  Info       `json:"image"`
	Reason string     `json:"reason,omitempty"`
}

// Outcome is how an update ended.
type Outcome string

// Update outcomes.
const (
	// Confirmed: the new image reported healthy and is the active one.
	Confirmed Outcome = "confirmed"
	// RolledBack: the new image ran but was not confirmed (boot limit,
	// deadline, or an explicit Rollback); the previous image is active.
	RolledBack Outcome = "rolled-back"
	// Failed: the downloaded image did not verify; nothing was switched.
	Failed Outcome = "failed"
)

// Result reports how an update ended. The zero Result means nothing
// happened.
type Result struct {
	State  Outcome `json:"state,omitempty"`
	Reason string  `json:"reason,omitempty"`
	Slot   Slot    `json:"slot,omitempty"`
	Image  Info    `json:"image"`
	// At is when it happened; zero for Failed (verification is not told
	// the time).
	At time.Time `json:"at,omitzero"`
}

// State is the persisted A/B state.
type State struct {
	// Active is the committed slot: the last confirmed image, which runs
	// whenever no update is pending and which a rollback returns to.
	Active Slot `json:"active"`
	// Pending is the slot switched to but not yet confirmed ("" if none).
	// It is the slot that boots while set.
	Pending Slot `json:"pending,omitempty"`
	// Previous is the slot that was active before the last confirmed
	// update ("" if none, or once it has been overwritten).
	Previous Slot `json:"previous,omitempty"`
	// Deadline is when a pending image must be confirmed by; set at its
	// first boot.
	Deadline time.Time `json:"deadline,omitzero"`
	// Boots counts starts of the pending image.
	Boots int       `json:"boots,omitempty"`
	A     SlotState `json:"a"`
	B     SlotState `json:"b"`
	// Last is the outcome of the last update.
	Last Result `json:"last"`
	// Counter is the security counter: the highest of the images
	// confirmed here. It never goes down.
	Counter uint64 `json:"counter,omitempty"`
}

// Slot returns the state of slot s.
func (st State) Slot(s Slot) SlotState {
	if s == A {
		return st.A
	}
	return st.B
}

func (st *State) slot(s Slot) *SlotState {
	if s == A {
		return &st.A
	}
	return &st.B
}

// BootSlot is the slot that runs after a (re)start: the pending one if
// any, otherwise the active one.
func (st State) BootSlot() Slot {
	if st.Pending != "" {
		return st.Pending
	}
	return st.Active
}

// stateFormat versions state.json so a future layout can be told apart.
const stateFormat = 1

type persistedState struct {
	Format int `json:"format"`
	State
}

func encodeState(st State) []byte {
	data, err := json.MarshalIndent(persistedState{Format: stateFormat, State: st}, "", "  ")
	if err != nil {
		// State holds only plain values; failure is a programming error.
		panic(err)
	}
	return append(data, '\n')
}

// decodeState parses and validates state.json.
func decodeState(data []byte) (State, error) {
	var f persistedState
	if err := json.Unmarshal(data, &f); err != nil {
		return State{}, err
	}
	if f.Format != stateFormat {
		return State{}, fmt.Errorf("format %d, want %d", f.Format, stateFormat)
	}
	st := f.State
	if !st.Active.valid() {
		return State{}, fmt.Errorf("active slot %q is not A or B", st.Active)
	}
	for _, s := range []Slot{st.Pending, st.Previous} {
		if s != "" && (!s.valid() || s == st.Active) {
			return State{}, fmt.Errorf("pending/previous slot %q is not the inactive slot", s)
		}
	}
	if st.Boots < 0 {
		return State{}, fmt.Errorf("negative boot count %d", st.Boots)
	}
	for _, s := range []Slot{A, B} {
		switch ss := st.Slot(s); ss.Status {
		case Empty, Good, Writing, Ready, Bad:
		default:
			return State{}, fmt.Errorf("slot %s has unknown status %q", s, ss.Status)
		}
	}
	if st.Slot(st.Active).Status != Good {
		return State{}, fmt.Errorf("active slot %s is %s, not good", st.Active, st.Slot(st.Active).Status)
	}
	if st.Pending != "" && st.Slot(st.Pending).Status != Ready {
		return State{}, fmt.Errorf("pending slot %s is %s, not ready", st.Pending, st.Slot(st.Pending).Status)
	}
	return st, nil
}
