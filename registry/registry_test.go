package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

var t0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func TestObserveRecordsFirstLastSeenAndFirmwareChanges(t *testing.T) {
	r := New(Limits{})
	r.Observe(t0, []Sighting{{ID: 7, At: t0, Role: "sensor", Hardware: "ESP32", FirmwareVersion: "1.0", FwMD5: "aa"}})
	r.Observe(t0.Add(time.Minute), []Sighting{{ID: 7, At: t0.Add(time.Minute), Role: "sensor", Hardware: "ESP32", FirmwareVersion: "1.0", FwMD5: "aa"}})
	r.Observe(t0.Add(2*time.Minute), []Sighting{{ID: 7, At: t0.Add(2 * time.Minute), Role: "sensor", Hardware: "ESP32", FirmwareVersion: "1.1", FwMD5: "bb"}})
	e, ok := r.Get(7)
	if !ok {
		t.Fatal("node 7 not registered")
	}
	if !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0.Add(2*time.Minute)) || e.Role != "sensor" || e.Hardware != "ESP32" {
		t.Fatalf("entry %+v", e)
	}
	want := []fleet.FirmwareRecord{{Version: "1.0", MD5: "aa", FirstSeen: t0, LastSeen: t0.Add(time.Minute)},
		{Version: "1.1", MD5: "bb", FirstSeen: t0.Add(2 * time.Minute), LastSeen: t0.Add(2 * time.Minute)}}
	if len(e.Firmware) != 2 || e.Firmware[0] != want[0] || e.Firmware[1] != want[1] {
		t.Fatalf("firmware history %+v, want %+v", e.Firmware, want)
	}
	// A node known only from the layout is first seen now, never last seen.
	r.Observe(t0.Add(time.Hour), []Sighting{{ID: 9}})
	if e, _ := r.Get(9); !e.FirstSeen.Equal(t0.Add(time.Hour)) || !e.LastSeen.IsZero() {
		t.Fatalf("layout-only node %+v", e)
	}
}

func TestFirmwareHistoryIsBounded(t *testing.T) {
	r := New(Limits{MaxFirmware: 3})
	for i := range 10 {
		r.Observe(t0, []Sighting{{ID: 1, At: t0.Add(time.Duration(i) * time.Minute), FirmwareVersion: string(rune('a' + i))}})
	}
	e, _ := r.Get(1)
	if len(e.Firmware) != 3 || e.Firmware[0].Version != "h" || e.Firmware[2].Version != "j" {
		t.Fatalf("firmware %+v: want the newest 3", e.Firmware)
	}
}

func TestPatchBoundsAndErrors(t *testing.T) {
	r := New(Limits{})
	r.Observe(t0, []Sighting{{ID: 1, At: t0}, {ID: 2, At: t0}})
	tags17 := make([]string, 17)
	for i := range tags17 {
		tags17[i] = "t" + string(rune('a'+i))
	}
	for _, c := range []struct {
		name string
		p    fleet.NodePatch
		want string
		is   error
	}{
		{"empty", fleet.NodePatch{}, "nothing to change", fleet.ErrInvalid},
		{"long name", fleet.NodePatch{Name: ptr(strings.Repeat("x", 65))}, "name: 65 bytes, at most 64", fleet.ErrInvalid},
		{"control", fleet.NodePatch{Name: ptr("a\x00b")}, "control character", fleet.ErrInvalid},
		{"spaces", fleet.NodePatch{Name: ptr(" kitchen")}, "leading or trailing spaces", fleet.ErrInvalid},
		{"long notes", fleet.NodePatch{Notes: ptr(strings.Repeat("x", 1025))}, "notes: 1025 bytes, at most 1024", fleet.ErrInvalid},
		{"bad tag", fleet.NodePatch{Tags: &[]string{"first floor"}}, `tag "first floor": only letters`, fleet.ErrInvalid},
		{"empty tag", fleet.NodePatch{Tags: &[]string{""}}, `tag "": 1..32`, fleet.ErrInvalid},
		{"too many tags", fleet.NodePatch{Tags: &tags17}, "17 tags, at most 16", fleet.ErrInvalid},
	} {
		_, err := r.Patch(t0, 1, c.p)
		if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := r.Patch(t0, 1, fleet.NodePatch{Name: ptr("Kitchen"), Tags: &[]string{"floor:1", "floor:1", "east"}, Notes: ptr("behind the fridge\nsince May")}); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Get(1)
	if e.Name != "Kitchen" || len(e.Tags) != 2 || e.Tags[0] != "floor:1" || e.Tags[1] != "east" || e.Notes != "behind the fridge\nsince May" {
		t.Fatalf("entry %+v", e)
	}
	if _, err := r.Patch(t0, 2, fleet.NodePatch{Name: ptr("kitchen")}); !errors.Is(err, fleet.ErrConflict) || !strings.Contains(err.Error(), "node 1's already") {
		t.Fatalf("duplicate name: %v", err)
	}
	// A field left out stays; an empty one clears.
	if _, err := r.Patch(t0, 1, fleet.NodePatch{Tags: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if e, _ := r.Get(1); e.Name != "Kitchen" || len(e.Tags) != 0 {
		t.Fatalf("after clearing tags: %+v", e)
	}
}

func TestFullRegistryDropsUnnamedNodesFirstAndRefusesWhenAllNamed(t *testing.T) {
	r := New(Limits{MaxNodes: 2})
	r.Observe(t0, []Sighting{{ID: 1, At: t0}, {ID: 2, At: t0.Add(time.Second)}})
	if _, err := r.Patch(t0, 2, fleet.NodePatch{Name: ptr("two")}); err != nil {
		t.Fatal(err)
	}
	// Node 1 is older but unnamed: it makes room for node 3.
	if refused := r.Observe(t0, []Sighting{{ID: 3, At: t0.Add(2 * time.Second)}}); refused != 0 {
		t.Fatalf("refused %d", refused)
	}
	if _, ok := r.Get(1); ok {
		t.Fatal("node 1 kept in a full registry")
	}
	if _, err := r.Patch(t0, 3, fleet.NodePatch{Name: ptr("three")}); err != nil {
		t.Fatal(err)
	}
	if refused := r.Observe(t0, []Sighting{{ID: 4, At: t0}}); refused != 1 {
		t.Fatalf("refused %d, want 1: every entry is named", refused)
	}
	if _, err := r.Patch(t0, 4, fleet.NodePatch{Name: ptr("four")}); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "forget dead nodes") {
		t.Fatalf("patch into a full registry: %v", err)
	}
}

func TestSelectByTagsAndNames(t *testing.T) {
	r := New(Limits{})
	r.Observe(t0, []Sighting{{ID: 1}, {ID: 2}, {ID: 3}})
	r.Patch(t0, 1, fleet.NodePatch{Tags: &[]string{"east"}})
	r.Patch(t0, 2, fleet.NodePatch{Tags: &[]string{"east", "west"}, Name: ptr("Pump")})
	r.Patch(t0, 3, fleet.NodePatch{Name: ptr("Gate")})
	got, err := r.Select([]string{"east"}, []string{"gate"})
	if err != nil || len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("select: %v, %v", got, err)
	}
	if _, err := r.Select([]string{"north"}, nil); !errors.Is(err, fleet.ErrInvalid) || !strings.Contains(err.Error(), `tag "north": no node has it`) {
		t.Fatalf("unknown tag: %v", err)
	}
	if _, err := r.Select(nil, []string{"Shed"}); !errors.Is(err, fleet.ErrInvalid) || !strings.Contains(err.Error(), `name "Shed": no node has it`) {
		t.Fatalf("unknown name: %v", err)
	}
}

func TestSaveRestoreRoundTripAndForget(t *testing.T) {
	r := New(Limits{})
	r.Observe(t0, []Sighting{{ID: 5, At: t0, FirmwareVersion: "1.0", FwMD5: "aa"}})
	r.Patch(t0, 5, fleet.NodePatch{Name: ptr("Shed"), Tags: &[]string{"out"}})
	data, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	r2 := New(Limits{})
	if err := r2.Restore(data); err != nil {
		t.Fatal(err)
	}
	e, ok := r2.Get(5)
	if !ok || e.Name != "Shed" || e.Tags[0] != "out" || len(e.Firmware) != 1 || !e.FirstSeen.Equal(t0) {
		t.Fatalf("restored %+v", e)
	}
	if !r2.Forget(5) || r2.Forget(5) {
		t.Fatal("forget")
	}
	// Coming back is a new entry.
	r2.Observe(t0.Add(time.Hour), []Sighting{{ID: 5, At: t0.Add(time.Hour)}})
	if e, _ := r2.Get(5); !e.FirstSeen.Equal(t0.Add(time.Hour)) || e.Name != "" {
		t.Fatalf("after forgetting: %+v", e)
	}
	for _, bad := range []string{`{`, `{"version":2,"nodes":[]}`, `{"version":1,"nodes":[{"node_id":1,"name":"a\u0000"}]}`, `{"version":1,"nodes":[{"node_id":1},{"node_id":1}]}`} {
		if err := New(Limits{}).Restore([]byte(bad)); err == nil {
			t.Errorf("restore %s: no error", bad)
		}
	}
}

// A full registry takes several new nodes in one Observe, each in the
// place of the node heard from longest ago, never one seen in the same
// sighting.
func TestFullRegistryDropsOldestForEachNewNode(t *testing.T) {
	r := New(Limits{MaxNodes: 3})
	r.Observe(t0, []Sighting{{ID: 1, At: t0}, {ID: 2, At: t0.Add(time.Second)}, {ID: 3, At: t0.Add(2 * time.Second)}})
	// Node 1, the oldest, is seen again first: nodes 2 and 3 make room.
	refused := r.Observe(t0, []Sighting{{ID: 1, At: t0.Add(5 * time.Second)}, {ID: 4, At: t0.Add(5 * time.Second)}, {ID: 5, At: t0.Add(5 * time.Second)}})
	if refused != 0 {
		t.Fatalf("refused %d", refused)
	}
	for id, want := range map[uint32]bool{1: true, 2: false, 3: false, 4: true, 5: true} {
		if _, ok := r.Get(id); ok != want {
			t.Errorf("node %d kept %v, want %v", id, ok, want)
		}
	}
}
