package console

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

type namedEvent struct {
	mesh.EventBase
	State string  `json:"state"`
	Rate  float64 `json:"rate_bps"`
}

func (namedEvent) EventName() string { return "ota" }

type emptyNamed struct{ mesh.EventBase }

func (emptyNamed) EventName() string { return "ping" }

func TestNamedEventLine(t *testing.T) {
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	line := EventLine(at, namedEvent{State: "downloading", Rate: 1.5})
	want := `{"t":"2026-11-22T12:00:00Z","event":"ota","state":"downloading","rate_bps":1.5}` + "\n"
	if string(line) != want {
		t.Fatalf("line %s, want %s", line, want)
	}
	line = EventLine(at, emptyNamed{})
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil || len(m) != 2 || m["event"] != "ping" {
		t.Fatalf("line %s (%v), want only t and event", line, err)
	}
}
