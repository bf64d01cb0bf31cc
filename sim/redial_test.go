package sim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// redialRun connects station 1 to AP 0, redials it and makes both ends send
// a numbered message on every connection they have every 10 ms for
// sendFor, as a flooded broadcast goes out on every link.
func redialRun(t *testing.T, seed uint64, overlap, lag, sendFor time.Duration) (*Network, []*Node, []*fake, mesh.ConnID) {
	t.Helper()
	m := Model{Radio: Radio{ByteTime: 10 * time.Microsecond}, Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m, Seed: seed}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	old := connTo(t, nd[1], nd[0])
	for _, f := range fk {
		f.onRecv = func(f *fake, now time.Time, c mesh.ConnID, msg []byte) {
			if slices.Contains(f.drops, c) {
				t.Errorf("node %d: %q on connection %d after its Disconnect", f.id, msg, c)
			}
		}
	}
	if got := n.Redial(nd[1], overlap, lag); got != 1 {
		t.Fatalf("Redial replaced %d connections, want 1", got)
	}
	for i, f := range fk {
		if len(f.conns) != 2 {
			t.Fatalf("node %d has connections %v after Redial, want the old and a new one", f.id, f.conns)
		}
		if last := f.connects[len(f.connects)-1]; last.station != (i == 1) {
			t.Errorf("node %d: new connection station=%v", f.id, last.station)
		}
	}
	for k := range int(sendFor / (10 * time.Millisecond)) {
		n.After(time.Duration(k)*10*time.Millisecond, func() {
			for _, x := range nd {
				if err := x.Step(func(now time.Time, mc Machine) {
					f := mc.(*fake)
					for _, c := range f.conns {
						f.send(c, fmt.Sprintf("%d:%04d", f.id, k), mesh.PriorityNormal)
					}
				}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	n.RunFor(overlap + lag + time.Second)
	return n, nd, fk, old
}

// seqOf is the number of a message sent by redialRun.
func seqOf(t *testing.T, msg string) int {
	t.Helper()
	var from, k int
	if _, err := fmt.Sscanf(msg, "%d:%d", &from, &k); err != nil {
		t.Fatalf("message %q: %v", msg, err)
	}
	return k
}

// Over the overlap both connections deliver: every message twice, the old
// connection's copies late and behind newer messages of the new one, and
// each connection in order. The old connection then closes, after its
// data, at both ends.
func TestRedialDuplicatesAndReorders(t *testing.T) {
	const overlap, lag, sendFor = 2 * time.Second, 300 * time.Millisecond, 1990 * time.Millisecond
	_, _, fk, old := redialRun(t, 7, overlap, lag, sendFor)
	sent := int(sendFor / (10 * time.Millisecond))

	ap := fk[0]
	last := map[mesh.ConnID]int{}
	copies := map[int]int{}
	firstAt := map[int]time.Time{}
	maxSeen, reordered := -1, 0
	var maxLate time.Duration
	for _, r := range ap.got {
		k := seqOf(t, r.msg)
		if prev, ok := last[r.conn]; ok && k <= prev {
			t.Fatalf("connection %d delivered %d after %d", r.conn, k, prev)
		}
		last[r.conn] = k
		copies[k]++
		if k < maxSeen {
			reordered++
		}
		maxSeen = max(maxSeen, k)
		if at, ok := firstAt[k]; ok {
			maxLate = max(maxLate, r.at.Sub(at))
		} else {
			firstAt[k] = r.at
		}
	}
	for k := range sent {
		if copies[k] != 2 {
			t.Fatalf("message %d reached the AP %d times, want 2 (one per connection)", k, copies[k])
		}
	}
	if reordered == 0 {
		t.Error("no message arrived behind a newer one: the old connection was not held back")
	}
	if maxLate < lag/2 || maxLate > lag+10*time.Millisecond {
		t.Errorf("the second copy came at most %v after the first, want about the lag %v", maxLate, lag)
	}
	// The station closed the old connection: it is told at once, the AP
	// after the data the station had sent on it (checked above: every
	// message came twice, none after the Disconnect).
	for _, f := range fk {
		if !slices.Equal(f.drops, []mesh.ConnID{old}) {
			t.Errorf("node %d dropped %v, want [%d]", f.id, f.drops, old)
		}
		if len(f.conns) != 1 || f.conns[0] == old {
			t.Errorf("node %d keeps connections %v, want the new one only", f.id, f.conns)
		}
	}
	// At the station, the old connection's messages are in order too.
	lastSta := map[mesh.ConnID]int{}
	for _, r := range fk[1].got {
		k := seqOf(t, r.msg)
		if prev, ok := lastSta[r.conn]; ok && k <= prev {
			t.Fatalf("station: connection %d delivered %d after %d", r.conn, k, prev)
		}
		lastSta[r.conn] = k
	}
	t.Logf("AP: %d messages, %d behind a newer one, second copies up to %v late", len(ap.got), reordered, maxLate)
}

// The same seed gives the same run; without lag nothing comes behind a
// newer message.
func TestRedialDeterministic(t *testing.T) {
	n1, _, _, _ := redialRun(t, 11, time.Second, 200*time.Millisecond, 500*time.Millisecond)
	n2, _, _, _ := redialRun(t, 11, time.Second, 200*time.Millisecond, 500*time.Millisecond)
	if n1.TraceDigest() != n2.TraceDigest() {
		t.Error("same seed, different runs")
	}
	_, _, fk, _ := redialRun(t, 11, time.Second, 0, 500*time.Millisecond)
	maxSeen := -1
	for _, r := range fk[0].got {
		k := seqOf(t, r.msg)
		if k < maxSeen {
			t.Fatalf("without lag, %q came after message %d", r.msg, maxSeen)
		}
		maxSeen = k
	}
}

// RedialPair touches one pair; a node without connections has none to
// replace.
func TestRedialPair(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 4)
	if err := n.Star(nd[:3]); err != nil { // 1 → 0, 2 → 0
		t.Fatal(err)
	}
	if got := n.Redial(nd[3], time.Second, 0); got != 0 {
		t.Errorf("unconnected node: Redial replaced %d", got)
	}
	if got := n.RedialPair(nd[0], nd[2], time.Second, 0); got != 1 {
		t.Fatalf("RedialPair replaced %d, want 1", got)
	}
	if len(fk[0].conns) != 3 || len(fk[1].conns) != 1 || len(fk[2].conns) != 2 {
		t.Errorf("connections %v %v %v, want 3, 1 and 2", fk[0].conns, fk[1].conns, fk[2].conns)
	}
	n.RunFor(2 * time.Second)
	if len(fk[0].conns) != 2 || len(fk[2].conns) != 1 || len(fk[1].drops) != 0 {
		t.Errorf("after the overlap: connections %v %v, drops of node 2 %v", fk[0].conns, fk[2].conns, fk[1].drops)
	}
}

// A mesh node refuses the second connection to a neighbour it already
// reaches; once the old one closed, the station joins again and the mesh
// converges, and broadcasts meanwhile arrive once each.
func TestRedialMeshRefusesDuplicate(t *testing.T) {
	n, nodes := meshNet(t, Config{Seed: 5, Model: ESP8266()}, 6, TopologyChain)
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged")
	}
	d := watchDeliveries(n)
	var refused int
	n.OnEvent(func(nd *Node, at time.Time, ev mesh.Event) {
		if dc, ok := ev.(mesh.DroppedConnection); ok && dc.Reason == "already connected" {
			refused++
		}
	})
	mid := nodes[2]
	if got := n.Redial(mid, 5*time.Second, 2*time.Second); got != 2 {
		t.Fatalf("Redial replaced %d connections of a chain's middle node, want 2", got)
	}
	for k := range 10 {
		n.After(time.Duration(k)*500*time.Millisecond, func() {
			if err := nodes[0].SendBroadcast(fmt.Sprintf("b%d", k), false); err != nil {
				t.Error(err)
			}
		})
	}
	n.RunFor(6 * time.Second)
	if refused == 0 {
		t.Error("no node refused the second connection as already connected")
	}
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged again after the redial")
	}
	for msg, by := range d.got {
		for id, c := range by {
			if c != 1 {
				t.Errorf("%s reached node %d %d times", msg, id, c)
			}
		}
	}
	if len(d.got) != 10 {
		t.Errorf("%d broadcasts seen, want 10", len(d.got))
	}
}
