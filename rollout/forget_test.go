package rollout

import (
	"errors"
	"testing"
	"time"
)

func TestManagerForgetsOnlyFinishedRollouts(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	topo := Topology{Root: 1, Parent: map[uint32]uint32{10: 1}}
	nodes := []NodeInfo{{ID: 10, Role: "sensor", Hardware: "ESP32", MD5: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Online: true}}
	spec := Spec{ID: "a", Image: Image{MD5: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Role: "sensor", Hardware: "ESP32"}}
	m := NewManager()
	if _, err := m.Start(now, spec, nodes, topo); err != nil {
		t.Fatal(err)
	}
	if err := m.Forget("a"); !errors.Is(err, ErrState) {
		t.Fatalf("forget a running rollout: %v, want ErrState", err)
	}
	if err := m.Forget("b"); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("forget an unknown rollout: %v, want ErrNoRollout", err)
	}
	if err := m.Abort(now, "a", "", false); err != nil {
		t.Fatal(err)
	}
	if err := m.Forget("a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("a"); ok || len(m.Rollouts()) != 0 {
		t.Fatal("forgotten rollout still listed")
	}
}
