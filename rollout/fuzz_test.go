package rollout

import (
	"slices"
	"testing"
	"time"
)

// FuzzRollout drives a rollout with any sequence of inputs. It must not
// panic, and after every input: no node updates together with one of its
// ancestors, no node of a later wave updates, at most MaxConcurrent update,
// a final rollout stays final and asks for nothing, and the snapshot
// restores into the same state.
func FuzzRollout(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Add([]byte{3, 3, 3, 1, 1, 1, 6, 6, 6, 2, 9, 9, 4, 4, 0, 12})
	f.Add([]byte{7, 200, 7, 100, 3, 0, 3, 1, 5, 2, 11, 8, 3, 3})
	f.Fuzz(runFuzzInput)
}

func runFuzzInput(t *testing.T, in []byte) {
	next := func() int {
		if len(in) == 0 {
			return 0
		}
		b := in[0]
		in = in[1:]
		return int(b)
	}
	// A tree of 12 devices shaped by the input.
	parent := map[uint32]uint32{}
	for id := uint32(1); id <= 12; id++ {
		parent[id] = uint32(next()) % id // 0 (the root) or an earlier node
	}
	topo := tree(parent)
	plan := Plan{Soak: time.Duration(next()%4) * time.Minute, MaxConcurrent: next() % 4, MaxPerSubtree: next() % 3,
		Policy: []Policy{PolicyStop, PolicyRollback}[next()%2], Failure: Thresholds{Count: next() % 4, Percent: float64(next() % 60)},
		Approval: next()%5 == 0, Pause: next()%5 == 1, Linger: time.Duration(1+next()%10) * time.Minute}
	switch next() % 3 {
	case 0:
		plan.Waves = []Wave{{Count: 1 + next()%3}, {Percent: float64(1 + next()%100)}, {Percent: 100}}
	case 1:
		plan.Exponential = &Exponential{Start: 1 + next()%3, Factor: 1.5 + float64(next()%3)}
	}
	nodes := infos(topo)
	for i := range nodes {
		nodes[i].Online = next()%6 != 0
	}
	r, err := New(t0, spec(plan), nodes, topo)
	if err != nil {
		t.Fatal(err)
	}
	r.Advance()
	now := t0
	for len(in) > 0 {
		final := r.s.State.Final()
		id := uint32(1 + next()%14) // 13 and 14 are unknown nodes
		md5 := []string{newMD5, oldMD5, "ffffffffffffffffffffffffffffffff"}[next()%3]
		op := next() % 13
		switch op {
		case 0:
			now = now.Add(time.Duration(next()) * time.Second)
			r.Tick(now)
		case 1:
			r.Outcome(now, Outcome{Node: id, MD5: md5, State: OutcomeConfirmed})
		case 2:
			r.Outcome(now, Outcome{Node: id, MD5: md5, State: []OutcomeState{OutcomeRolledBack, OutcomeRefused, OutcomeFailed}[next()%3]})
		case 3:
			r.Observe(now, Sample{Node: id, Online: next()%4 != 0, Uptime: time.Duration(next()) * time.Second,
				FreeMemory: uint32(next()) * 1000, Dropped: uint64(next()), CriticalAlerts: next() % 2})
		case 4:
			r.Joined(now, NodeInfo{ID: id, Role: "sensor", Hardware: "ESP32", MD5: md5, Version: []string{"", "1.0", "3.0"}[next()%3]})
		case 5:
			r.Left(now, id)
		case 6:
			_ = r.Pause(now)
		case 7:
			_ = r.Resume(now)
		case 8:
			_ = r.Approve(now)
		case 9:
			_ = r.Abort(now, "", next()%2 == 0)
		case 10:
			p := map[uint32]uint32{}
			for c := uint32(1); c <= 12; c++ {
				p[c] = uint32(next()) % c
			}
			r.SetTopology(now, tree(p))
		case 11:
			b, err := r.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			r2, err := Restore(now, b)
			if err != nil {
				t.Fatalf("restore of its own snapshot: %v", err)
			}
			r2.Advance()
			b2, _ := r2.Snapshot()
			if string(b) != string(b2) && !r.s.State.Final() {
				// A restore re-asks for rollbacks and may move on
				// (step); compare the states that cannot move.
				if r.s.State == StatePaused || r.s.State == StateAwaitingApproval {
					t.Fatalf("a held rollout changed when restored:\n%s\n%s", b, b2)
				}
			}
			r = r2
		case 12:
			now = now.Add(time.Duration(next()) * time.Minute)
			r.Tick(now)
		}
		rd := r.Ready()
		r.Advance()
		checkInvariants(t, r, plan)
		if op != 11 { // a restore asks again for updates under way
			checkStarts(t, r, rd)
		}
		if final {
			for _, a := range rd.Actions {
				if a.Kind == ActionUpdate {
					t.Fatalf("a %s rollout started updates: %+v", r.s.State, a)
				}
			}
		}
	}
}

// checkStarts: a node started now has no ancestor or descendant updating
// or rolling back.
func checkStarts(t *testing.T, r *Rollout, rd Ready) {
	t.Helper()
	for _, a := range rd.Actions {
		if a.Kind != ActionUpdate {
			continue
		}
		for _, id := range a.Nodes {
			for _, anc := range r.ancestors(id) {
				if m, ok := r.s.Nodes[anc]; ok && m.State.inFlight() {
					t.Fatalf("node %d started while its ancestor %d is %s", id, anc, m.State)
				}
			}
			for other, m := range r.s.Nodes {
				if m.State.inFlight() && other != id && slices.Contains(r.ancestors(other), id) {
					t.Fatalf("node %d started while its descendant %d is %s", id, other, m.State)
				}
			}
		}
	}
}

func checkInvariants(t *testing.T, r *Rollout, plan Plan) {
	t.Helper()
	updating := 0
	for id, n := range r.s.Nodes {
		if n.State != NodeUpdating {
			continue
		}
		updating++
		if n.Wave > r.s.Wave {
			t.Fatalf("node %d of wave %d updates in wave %d", id, n.Wave, r.s.Wave)
		}
	}
	if plan.MaxConcurrent > 0 && updating > plan.MaxConcurrent {
		t.Fatalf("%d updating, max_concurrent %d", updating, plan.MaxConcurrent)
	}
	if r.s.State.Final() && r.s.Finished.IsZero() {
		t.Fatalf("final state %s without a finish time", r.s.State)
	}
}
