package alert

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// The files under testdata were written by the alert engine as it was in
// package status, before its rules became a table:
//   - config-<name>.json: an engine configuration;
//   - trace-<name>.jsonl.gz: 2,000 seeded random steps (samples near
//     every threshold, node flags, restarts, drop bursts, offline and
//     online, ticks, forgotten nodes) with the changes each produced;
//   - state-<name>.json: the engine's saved state after the trace, as a
//     gateway writes it to alerts.json.
var traceNames = []string{"default", "tuned", "quiet"}

type traceSample struct {
	Uptime          uint32 `json:"uptime"`
	FreeMemory      uint32 `json:"free_memory,omitempty"`
	LatencyUs       uint32 `json:"latency_us,omitempty"`
	LossPermille    uint16 `json:"loss_permille,omitempty"`
	RSSI            int8   `json:"rssi,omitempty"`
	WiFi            uint8  `json:"wifi,omitempty"`
	Flags           uint8  `json:"flags,omitempty"`
	OTAFailed       bool   `json:"ota_failed,omitempty"`
	OTAState        string `json:"ota_state,omitempty"`
	FirmwareVersion string `json:"firmware,omitempty"`
	MessagesDropped uint32 `json:"dropped,omitempty"`
}

type traceStep struct {
	Op      string          `json:"op"`
	At      time.Time       `json:"at"`
	Node    uint32          `json:"node,omitempty"`
	Sample  *traceSample    `json:"sample,omitempty"`
	Online  bool            `json:"online,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Changes json.RawMessage `json:"changes"`
}

func readTraceConfig(t *testing.T, name string) Config {
	t.Helper()
	data, err := os.ReadFile("testdata/config-" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestEngineReplaysTrace: the rule table raises, updates and clears
// exactly what the per-rule code did, step by step, and ends in the same
// saved state.
func TestEngineReplaysTrace(t *testing.T) {
	for _, name := range traceNames {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open("testdata/trace-" + name + ".jsonl.gz")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			e := NewEngine(readTraceConfig(t, name))
			sc := bufio.NewScanner(zr)
			sc.Buffer(nil, 1<<20)
			steps, changes := 0, 0
			for sc.Scan() {
				var st traceStep
				if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
					t.Fatalf("step %d: %v", steps+1, err)
				}
				steps++
				var got []Change
				switch st.Op {
				case "observe":
					s := st.Sample
					got = e.Observe(st.At, st.Node, Sample{Uptime: s.Uptime, FreeMemory: s.FreeMemory, LatencyUs: s.LatencyUs,
						LossPermille: s.LossPermille, RSSI: s.RSSI, WiFi: s.WiFi, Flags: s.Flags, OTAFailed: s.OTAFailed,
						OTAState: s.OTAState, FirmwareVersion: s.FirmwareVersion, MessagesDropped: s.MessagesDropped})
				case "online":
					got = e.SetOnline(st.At, st.Node, st.Online, st.Reason)
				case "tick":
					got = e.Tick(st.At)
				case "forget":
					e.Forget(st.Node)
					continue
				default:
					t.Fatalf("step %d: op %q", steps, st.Op)
				}
				changes += len(got)
				gotJSON, _ := json.Marshal(got)
				if !bytes.Equal(gotJSON, st.Changes) {
					t.Fatalf("step %d (%s node %d at %v):\n got %s\nwant %s", steps, st.Op, st.Node, st.At, gotJSON, st.Changes)
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if steps != 2000 || changes < 1000 {
				t.Fatalf("%d steps, %d changes: the trace is not what it was", steps, changes)
			}
			want, err := os.ReadFile("testdata/state-" + name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(e)
			if !bytes.Equal(got, want) {
				t.Fatalf("state after the trace differs:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestEngineRestoresSavedState: a state file written before the rules
// became a table still loads, and saves back byte for byte.
func TestEngineRestoresSavedState(t *testing.T) {
	for _, name := range traceNames {
		data, err := os.ReadFile("testdata/state-" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		e := NewEngine(readTraceConfig(t, name))
		if err := e.Restore(data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(e.Active()) == 0 || len(e.Recent()) == 0 {
			t.Fatalf("%s: restored %d active, %d recent", name, len(e.Active()), len(e.Recent()))
		}
		again, _ := json.Marshal(e)
		if !bytes.Equal(again, data) {
			t.Fatalf("%s: state changed across a restore", name)
		}
	}
}
