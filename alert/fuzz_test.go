package alert

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzAlertRestore: a persisted state either restores, and then marshals
// back to something that restores to the same, or is refused.
func FuzzAlertRestore(f *testing.F) {
	e := NewEngine(Config{})
	e.Observe(epoch, 1, Sample{Uptime: 10, FreeMemory: 5000, MessagesDropped: 3})
	e.Observe(epoch.Add(time.Minute), 1, Sample{Uptime: 70, FreeMemory: 5000, MessagesDropped: 9})
	e.SetOnline(epoch, 2, false, "overdue")
	state, _ := json.Marshal(e)
	f.Add(state)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEngine(Config{})
		if err := e.Restore(data); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error outside the set: %v", err)
			}
			return
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("restored state does not marshal: %v", err)
		}
		e2 := NewEngine(Config{})
		if err := e2.Restore(out); err != nil {
			t.Fatalf("marshalled state does not restore: %v\n%s", err, out)
		}
		out2, _ := json.Marshal(e2)
		if string(out) != string(out2) {
			t.Fatalf("state not stable:\n%s\n%s", out, out2)
		}
		// The engine keeps working on restored state.
		e2.Observe(epoch.Add(time.Hour), 1, Sample{Uptime: 3600})
		e2.Tick(epoch.Add(2 * time.Hour))
	})
}
