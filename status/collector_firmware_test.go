package status

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/protocol"
)

// firmwareMesh is root (collector) — A (reporter streaming every
// interval) with A's firmware version in *ver. It records when the root
// sent A a status query, and drops A's status reports if dropReports.
type firmwareMesh struct {
	*fakeMesh
	col         *Collector
	ver         string
	queries     []time.Duration // since epoch
	dropReports bool
}

func newFirmwareMesh(t *testing.T, interval time.Duration) *firmwareMesh {
	fm := &firmwareMesh{fakeMesh: newFakeMesh(t), ver: "1.0.0"}
	fm.col = NewCollector(CollectorConfig{}, fm.now)
	r := NewReporter(ReporterConfig{Interval: interval, Providers: Providers{
		Firmware: func() (string, string) { return fm.ver, "md5-" + fm.ver },
	}}, fm.now)
	fm.add(rootID, true, fm.col)
	fm.add(nodeA, false, r)
	fm.drop = func(from, to uint32, msg []byte) bool {
		hd, err := protocol.ParseHeader(msg)
		if err != nil {
			return false
		}
		if from == rootID && to == nodeA && hd.Type == TypeStatusQuery {
			fm.queries = append(fm.queries, fm.now.Sub(epoch))
		}
		return fm.dropReports && from == nodeA && hd.Type == TypeStatusReport
	}
	fm.link(rootID, nodeA)
	return fm
}

func (fm *firmwareMesh) firmwareOfA(t *testing.T) string {
	t.Helper()
	st, ok := fm.col.Model().Node(nodeA)
	if !ok {
		t.Fatal("node A not in the model")
	}
	return st.Metrics.FirmwareVersion
}

// An OTA update shortly after the root asked a node about its firmware:
// the new hash in the next frame is asked about at once, not a
// FirmwareGap after the first query.
func TestCollectorAsksNewFirmwareAtOnce(t *testing.T) {
	fm := newFirmwareMesh(t, 30*time.Second) // frames at 0, 30, 60 s
	fm.run(epoch.Add(10 * time.Second))
	if got := fm.firmwareOfA(t); got != "1.0.0" {
		t.Fatalf("firmware before the update %q", got)
	}
	fm.ver = "1.1.0"
	fm.run(epoch.Add(30 * time.Second))
	if got := fm.firmwareOfA(t); got != "1.1.0" {
		t.Fatalf("firmware after the frame at 30 s %q, want 1.1.0", got)
	}
	fm.run(epoch.Add(100 * time.Second)) // no more queries: the strings are known
	want := []time.Duration{0, 30 * time.Second}
	if fmt.Sprint(fm.queries) != fmt.Sprint(want) {
		t.Fatalf("firmware queries at %v, want %v", fm.queries, want)
	}
}

// A node that never answers is asked about the same hash once per
// FirmwareGap, however often its frames name it.
func TestCollectorRepeatsSameFirmwareQueryOncePerGap(t *testing.T) {
	fm := newFirmwareMesh(t, 5*time.Second)
	fm.dropReports = true
	fm.run(epoch.Add(150 * time.Second))
	want := []time.Duration{0, time.Minute, 2 * time.Minute}
	if fmt.Sprint(fm.queries) != fmt.Sprint(want) {
		t.Fatalf("firmware queries at %v, want %v", fm.queries, want)
	}
	if got := fm.firmwareOfA(t); got != "" {
		t.Fatalf("firmware %q without any report", got)
	}
}

// A node whose hash changes with every frame is asked at most
// firmwareQueryBurst times in any FirmwareGap.
func TestCollectorBoundsFirmwareQueriesOfFlappingNode(t *testing.T) {
	fm := newFirmwareMesh(t, 5*time.Second) // frames every 5 s from 0
	for i := range 24 {
		fm.ver = fmt.Sprintf("flap-%d", i)
		fm.run(epoch.Add(time.Duration(i) * 5 * time.Second))
	}
	fm.run(epoch.Add(119 * time.Second))
	// Three new hashes at 0, 5, 10 s are asked about at once; the fourth
	// query waits until the oldest of the three is a minute old.
	want := []time.Duration{0, 5 * time.Second, 10 * time.Second, 60 * time.Second, 65 * time.Second, 70 * time.Second}
	if fmt.Sprint(fm.queries) != fmt.Sprint(want) {
		t.Fatalf("firmware queries at %v, want %v", fm.queries, want)
	}
	gap := time.Minute
	for i := range fm.queries {
		if j := i + firmwareQueryBurst; j < len(fm.queries) && fm.queries[j]-fm.queries[i] < gap {
			t.Errorf("queries %v and %v: more than %d in %v", fm.queries[i], fm.queries[j], firmwareQueryBurst, gap)
		}
	}
}

// The collector's own node, alone at startup (the mesh not formed yet),
// is not "lost its connection to the root": its local sample carries no
// CONNECTION_LOST and no connection_lost alert is raised, whether or not
// the node is the root. A reporter on another node still flags it.
func TestCollectorLocalNodeAloneIsNotConnectionLost(t *testing.T) {
	for _, root := range []bool{true, false} {
		t.Run(fmt.Sprintf("root=%v", root), func(t *testing.T) {
			m := newFakeMesh(t)
			local := NewReporter(ReporterConfig{Interval: -1}, m.now)
			col := NewCollector(CollectorConfig{Local: local, LocalInterval: 10 * time.Second}, m.now)
			h := m.add(rootID, root, local, col)
			other := NewReporter(ReporterConfig{Interval: -1}, m.now)
			m.add(nodeA, false, other)
			m.runFor(45 * time.Second)

			st, ok := col.Model().Node(rootID)
			if !ok || st.Source != SourceLocal {
				t.Fatalf("local node %+v", st)
			}
			if st.Metrics.Connections != 0 || st.Metrics.Alerts.Has(FlagConnectionLost) {
				t.Fatalf("local sample: %d connections, alerts %v", st.Metrics.Connections, st.Metrics.Alerts)
			}
			for _, ev := range eventsOf[AlertEvent](h) {
				if ev.Alert.Kind == alert.KindConnectionLost {
					t.Fatalf("alert on the collector's own node: %+v", ev.Alert)
				}
			}
			if got := other.Snapshot(m.now).Alerts; !got.Has(FlagConnectionLost) {
				t.Fatalf("unconnected node's alerts %v, want CONNECTION_LOST", got)
			}
		})
	}
}

// After a fleet update the first node asked about a new hash does not
// answer: another node naming the same hash is asked once that query
// timed out, not a FirmwareGap later.
func TestCollectorAsksAnotherNodeWhenFirstFirmwareQueryUnanswered(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{QueryTimeout: 5 * time.Second}) // A and B run 2.0.0, frames at 0, 30, 60 s
	var asked []string
	tm.drop = func(from, to uint32, msg []byte) bool {
		hd, err := protocol.ParseHeader(msg)
		if err != nil {
			return false
		}
		if from == rootID && hd.Type == TypeStatusQuery {
			asked = append(asked, fmt.Sprintf("%d@%v", to, tm.now.Sub(epoch)))
		}
		return from == nodeA && hd.Type == TypeStatusReport
	}
	tm.run(epoch.Add(50 * time.Second))
	want := []string{fmt.Sprintf("%d@0s", nodeA), fmt.Sprintf("%d@30s", nodeB)}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Fatalf("firmware queries %v, want %v", asked, want)
	}
	for _, id := range []uint32{nodeA, nodeB} {
		if !tm.col.Model().knowsFirmware(id) {
			t.Errorf("firmware of %d unknown after B's answer", id)
		}
	}
}

// A node's first frame can arrive before the root's layout names it: the
// firmware query then finds no route. It does not count as asked, and is
// made again as soon as the layout changes, not a long interval later at
// the node's next frame.
func TestCollectorAsksAgainAFirmwareQueryThatFoundNoRoute(t *testing.T) {
	fm := newFirmwareMesh(t, 5*time.Minute)
	blocked := true
	fm.noRoute = func(from, to uint32, msg []byte) bool {
		hd, err := protocol.ParseHeader(msg)
		return err == nil && blocked && from == rootID && to == nodeA && hd.Type == TypeStatusQuery
	}
	fm.run(epoch.Add(10 * time.Second))
	if got := fm.firmwareOfA(t); got != "" || len(fm.queries) != 0 {
		t.Fatalf("firmware %q after %d queries sent, while the root had no route to A", got, len(fm.queries))
	}
	blocked = false
	const nodeC = 0x0c
	fm.add(nodeC, false)
	fm.link(rootID, nodeC) // the layout changes
	fm.run(epoch.Add(20 * time.Second))
	if got := fm.firmwareOfA(t); got != "1.0.0" {
		t.Fatalf("firmware %q 10 s after the layout changed, want 1.0.0 (queries at %v)", got, fm.queries)
	}
}
