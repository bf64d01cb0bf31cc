package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// A restart: the snapshot restores into the same state, asks for the
// updates under way again, and goes on exactly as the original does.
func TestSnapshotRestoreResumes(t *testing.T) {
	plan := Plan{Waves: []Wave{{Count: 2}, {Percent: 100}}, Soak: time.Minute, Policy: PolicyRollback}
	g := newRig(t, spec(plan), flat(6))
	canary := nodesOf(g.acts, ActionUpdate)
	g.confirm(canary[0])
	b, err := g.r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Restore(g.now, b)
	if err != nil {
		t.Fatal(err)
	}
	rd := r2.Ready()
	if got := nodesOf(rd.Actions, ActionUpdate); !slices.Equal(got, canary[1:]) {
		t.Fatalf("restored: asks for %v again, want %v", got, canary[1:])
	}
	r2.Advance()
	b2, _ := r2.Snapshot()
	if string(b) != string(b2) {
		t.Fatalf("snapshot changed by a restore:\n%s\n%s", b, b2)
	}
	for _, r := range []*Rollout{g.r, r2} {
		r.Outcome(g.now, Outcome{Node: canary[1], MD5: newMD5, State: OutcomeConfirmed})
		r.Tick(g.now.Add(time.Minute))
	}
	a, _ := g.r.Snapshot()
	c, _ := r2.Snapshot()
	if string(a) != string(c) {
		t.Fatalf("restored rollout diverged:\n%s\n%s", a, c)
	}
	if s, _ := r2.State(); s != StateRunning || r2.s.Wave != 1 {
		t.Fatalf("restored rollout: %s, wave %d", s, r2.s.Wave)
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	g := newRig(t, spec(Plan{Soak: time.Minute}), flat(2))
	g.confirm(1)
	b, _ := g.r.Snapshot()
	cases := map[string]string{
		`{`:                    "unexpected end",
		`{"spec":{"id":"r1"}}`: "image.md5",
		strings.Replace(string(b), `"state":"soaking"`, `"state":"dancing"`, 1): `unknown state "dancing"`,
		strings.Replace(string(b), `"wave":0`, `"wave":7`, 1):                   "wave 7 of 1",
		strings.Replace(string(b), `"id":1,`, `"id":9,`, 1):                     "names another node",
	}
	for in, want := range cases {
		_, err := Restore(t0, []byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore of %.60q: %v, want an error naming %q", in, err, want)
		}
	}
}

func TestManagerOverlapWaitsOrSupersedes(t *testing.T) {
	topo := flat(4)
	m := NewManager()
	start := func(id string, nodes []uint32, md5 string, overlap Overlap, reason string) *Rollout {
		t.Helper()
		s := spec(Plan{})
		s.ID, s.Targets.Nodes, s.Overlap, s.Reason = id, nodes, overlap, reason
		if md5 != "" {
			s.Image.MD5 = md5
		}
		r, err := m.Start(t0, s, infos(topo), topo)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	start("a", []uint32{1, 2}, "", "", "")
	start("b", []uint32{3, 4}, "", "", "")
	if got := nodesOf(m.Ready().Actions, ActionUpdate); !slices.Equal(got, []uint32{1, 2, 3, 4}) {
		t.Fatalf("disjoint rollouts: %v", got)
	}
	m.Advance()
	c := start("c", []uint32{2, 3}, "", "", "")
	if s, why := c.State(); s != StateWaiting || why != "waits for rollout a" {
		t.Fatalf("overlap: %s (%s)", s, why)
	}
	if _, err := m.Start(t0, c.Spec(), infos(topo), topo); err == nil {
		t.Fatal("an id used twice")
	}
	// A restart while c waits.
	snap, _ := m.Snapshot()
	m, err := RestoreManager(t0, snap)
	if err != nil || len(m.Rollouts()) != 3 {
		t.Fatalf("restore manager: %v", err)
	}
	m.Advance()
	for _, id := range []uint32{1, 2, 3, 4} {
		m.Outcome(t0, Outcome{Node: id, MD5: newMD5, State: OutcomeConfirmed})
	}
	c, _ = m.Get("c")
	if s, why := c.State(); s != StateCompleted || !strings.Contains(why, "2 skipped") {
		t.Fatalf("c after a and b: %s (%s)", s, why)
	}
	e := start("e", nil, strings.Repeat("c", 32), "", "")
	if len(nodesOf(m.Ready().Actions, ActionUpdate)) != 4 {
		t.Fatalf("e started %v", m.Ready().Actions)
	}
	m.Advance()
	start("d", nil, strings.Repeat("d", 32), OverlapSupersede, "hotfix")
	if s, why := e.State(); s != StateSuperseded || why != "superseded by rollout d: hotfix" {
		t.Fatalf("e: %s (%s)", s, why)
	}
	rd := m.Ready()
	if got := nodesOf(rd.Actions, ActionCancel); len(got) != 4 {
		t.Fatalf("superseded updates not cancelled: %+v", rd.Actions)
	}
	if err := m.Pause(t0, "zz"); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("unknown id: %v", err)
	}
}

// A rollout that supersedes one still rolling nodes back takes those nodes
// over: the rollbacks are cancelled, and no node is in flight for both.
func TestSupersedeTakesOverRollbacks(t *testing.T) {
	topo := flat(2)
	m := NewManager()
	a := spec(Plan{Soak: time.Minute, Policy: PolicyRollback})
	a.ID = "a"
	m.Start(t0, a, infos(topo), topo)
	m.Outcome(t0, Outcome{Node: 1, MD5: newMD5, State: OutcomeConfirmed})
	m.Outcome(t0, Outcome{Node: 2, MD5: newMD5, State: OutcomeRolledBack}) // a stops, rolls 1 back
	m.Advance()
	ra, _ := m.Get("a")
	if s, _ := ra.State(); s != StateStopping {
		t.Fatalf("a: %s", s)
	}
	b := spec(Plan{})
	b.ID, b.Image.MD5, b.Overlap = "b", strings.Repeat("c", 32), OverlapSupersede
	m.Start(t0, b, infos(topo), topo)
	if s, _ := ra.State(); s != StateSuperseded {
		t.Fatalf("a after b: %s", s)
	}
	rd := m.Ready()
	if got := nodesOf(rd.Actions, ActionCancel); !slices.Contains(got, 1) {
		t.Fatalf("a's rollback of node 1 not cancelled: %+v", rd.Actions)
	}
}
