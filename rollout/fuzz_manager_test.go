package rollout

import (
	"strings"
	"testing"
	"time"
)

// FuzzManager runs three rollouts with overlapping targets through any
// sequence of inputs: no panic, no node updating for two rollouts at once,
// and the manager's snapshot restores.
func FuzzManager(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{1, 1, 1, 1, 2, 2, 3, 7, 7, 0, 4})
	f.Fuzz(func(t *testing.T, in []byte) {
		next := func() int {
			if len(in) == 0 {
				return 0
			}
			b := in[0]
			in = in[1:]
			return int(b)
		}
		topo := flat(8)
		m := NewManager()
		now := t0
		images := []string{newMD5, strings.Repeat("c", 32), strings.Repeat("d", 32)}
		for k, id := range []string{"a", "b", "c"} {
			s := spec(Plan{Soak: time.Duration(next()%3) * time.Minute, Policy: []Policy{PolicyStop, PolicyRollback}[next()%2]})
			s.ID, s.Image.MD5 = id, images[k]
			s.Overlap = []Overlap{OverlapWait, OverlapSupersede}[next()%2]
			for n := uint32(1); n <= 8; n++ {
				if next()%2 == 0 {
					s.Targets.Nodes = append(s.Targets.Nodes, n)
				}
			}
			if len(s.Targets.Nodes) == 0 {
				s.Targets.Nodes = []uint32{1}
			}
			if _, err := m.Start(now, s, infos(topo), topo); err != nil {
				t.Fatal(err)
			}
		}
		for len(in) > 0 {
			id := uint32(1 + next()%8)
			ro := []string{"a", "b", "c"}[next()%3]
			switch next() % 8 {
			case 0:
				now = now.Add(time.Duration(next()) * time.Second)
				m.Tick(now)
			case 1:
				m.Outcome(now, Outcome{Node: id, MD5: images[next()%3], State: OutcomeConfirmed})
			case 2:
				m.Outcome(now, Outcome{Node: id, MD5: images[next()%3], State: OutcomeRolledBack})
			case 3:
				m.Observe(now, Sample{Node: id, Online: next()%3 != 0, Uptime: time.Duration(next()) * time.Second, FreeMemory: uint32(next()) * 1000})
			case 4:
				_ = m.Abort(now, ro, "", next()%2 == 0)
			case 5:
				_ = m.Pause(now, ro)
				_ = m.Resume(now, ro)
			case 6:
				m.Left(now, id)
				m.Joined(now, NodeInfo{ID: id, Role: "sensor", Hardware: "ESP32", MD5: oldMD5})
			case 7:
				b, err := m.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if m, err = RestoreManager(now, b); err != nil {
					t.Fatalf("restore of its own snapshot: %v", err)
				}
			}
			m.Ready()
			m.Advance()
			holder := map[uint32]string{}
			for _, r := range m.Rollouts() {
				for nid, n := range r.s.Nodes {
					if !n.State.inFlight() || r.s.State.Final() {
						continue
					}
					if other, ok := holder[nid]; ok {
						t.Fatalf("node %d in flight for rollouts %s and %s", nid, other, r.ID())
					}
					holder[nid] = r.ID()
				}
			}
		}
	})
}
