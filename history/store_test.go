package history

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func openTest(t *testing.T, opt Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func syncStore(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsMatchFleet(t *testing.T) {
	var names []string
	for _, m := range metrics {
		names = append(names, m.name)
	}
	if !slices.Equal(names, fleet.HistoryMetrics) || len(metrics) != numMetrics {
		t.Fatalf("metrics %v, fleet.HistoryMetrics %v", names, fleet.HistoryMetrics)
	}
}

func TestSeriesRawAndRollups(t *testing.T) {
	s, _ := openTest(t, Options{})
	// Node 7 reports every second for three minutes; its free memory
	// falls by one byte a second, its latency is unknown in the first
	// minute, it restarts once in the second.
	for i := range 180 {
		x := Sample{Node: 7, T: epoch.Add(time.Duration(i) * time.Second), FreeMemory: uint32(40000 - i), Uptime: uint32(1000 + i), Hops: 2, Health: 90}
		if i >= 60 {
			x.LatencyUs = 5000
		}
		if i == 90 {
			x.Reboots = 1
		}
		if !s.AddSample(x) {
			t.Fatal("sample dropped")
		}
	}
	s.AddSample(Sample{Node: 8, T: epoch, FreeMemory: 1})
	syncStore(t, s)
	ctx := context.Background()
	now := epoch.Add(time.Hour)

	raw, err := s.Series(ctx, fleet.SeriesQuery{Node: 7, Metric: "free_memory_bytes", From: epoch, To: epoch.Add(10 * time.Second), Step: 5 * time.Second}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []fleet.Point{{T: epoch.Unix(), V: 39998, Min: 39996, Max: 40000}, {T: epoch.Unix() + 5, V: 39993, Min: 39991, Max: 39995}}
	if !slices.Equal(raw.Points, want) || raw.StepS != 5 {
		t.Fatalf("raw points %+v, want %+v", raw.Points, want)
	}

	// The third minute is still open: only the first two are rollups.
	// Close writes it.
	s.Close()
	s2, err := Open(s.path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	mem, err := s2.Series(ctx, fleet.SeriesQuery{Node: 7, Metric: "free_memory_bytes", From: epoch, To: epoch.Add(3 * time.Minute), Step: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	want = []fleet.Point{{T: epoch.Unix(), V: 39970.5, Min: 39941, Max: 40000}, {T: epoch.Unix() + 60, V: 39910.5, Min: 39881, Max: 39940}, {T: epoch.Unix() + 120, V: 39850.5, Min: 39821, Max: 39880}}
	if !slices.Equal(mem.Points, want) {
		t.Fatalf("rollup points %+v, want %+v", mem.Points, want)
	}
	lat, err := s2.Series(ctx, fleet.SeriesQuery{Node: 7, Metric: "latency_ms", From: epoch, To: epoch.Add(3 * time.Minute), Step: 3 * time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat.Points) != 1 || lat.Points[0].V != 5 {
		t.Fatalf("latency points %+v: want the unknown first minute left out of the mean 5 ms", lat.Points)
	}
	reb, err := s2.Series(ctx, fleet.SeriesQuery{Node: 7, Metric: "reboots", From: epoch, To: epoch.Add(3 * time.Minute), Step: 3 * time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(reb.Points) != 1 || reb.Points[0].V != 1 {
		t.Fatalf("reboots %+v, want one", reb.Points)
	}
	none, err := s2.Series(ctx, fleet.SeriesQuery{Node: 99, Metric: "health"}, now)
	if err != nil || none.Points == nil || len(none.Points) != 0 {
		t.Fatalf("unknown node: %+v, %v; want no points and no error", none, err)
	}
}

func TestSeriesDefaults(t *testing.T) {
	s, _ := openTest(t, Options{})
	now := epoch.Add(48 * time.Hour)
	got, err := s.Series(context.Background(), fleet.SeriesQuery{Node: 1, Metric: "health"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.StepS != 60 || !got.To.Equal(now) || !got.From.Equal(now.Add(-24*time.Hour)) {
		t.Fatalf("defaults: %+v, want the last 24 h at 60 s", got)
	}
}

func TestQueryValidation(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	for _, c := range []struct {
		q    fleet.SeriesQuery
		want string
	}{
		{fleet.SeriesQuery{Metric: "heap"}, `metric "heap": not one of free_memory_bytes, latency_ms`},
		{fleet.SeriesQuery{Metric: "health", From: epoch, To: epoch}, "is not before to"},
		{fleet.SeriesQuery{Metric: "health", Step: 500 * time.Millisecond}, "want whole seconds"},
		{fleet.SeriesQuery{Metric: "health", From: epoch, To: epoch.Add(24 * time.Hour), Step: time.Second}, "86400 points, at most 10000"},
	} {
		_, err := s.Series(ctx, c.q, epoch)
		if !errors.Is(err, fleet.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want ErrInvalid with %q", c.q, err, c.want)
		}
	}
	if _, err := s.Events(ctx, fleet.EventQuery{Kind: "reboot"}, epoch); !errors.Is(err, fleet.ErrInvalid) || !strings.Contains(err.Error(), "not one of topology, node, alert, ota, action") {
		t.Errorf("bad kind: %v", err)
	}
	if _, err := s.Events(ctx, fleet.EventQuery{Limit: 5000}, epoch); !errors.Is(err, fleet.ErrInvalid) || !strings.Contains(err.Error(), "limit 5000: want 1 to 1000") {
		t.Errorf("bad limit: %v", err)
	}
}

func TestEventsAlertsCampaigns(t *testing.T) {
	s, _ := openTest(t, Options{})
	s.AddEvent(fleet.HistoryEvent{T: epoch, Kind: "node", NodeID: 7, Summary: "node 7 joined"})
	s.AddEvent(fleet.HistoryEvent{T: epoch.Add(time.Second), Kind: "action", Summary: "rest token: campaign.start c1", Data: []byte(`{"via":"rest"}`)})
	a := fleet.Alert{ID: "a1", NodeID: 7, Type: "low_memory", Severity: "warning", Message: "low", State: "raised", Raised: epoch.Add(2 * time.Second), Updated: epoch.Add(2 * time.Second)}
	s.AddAlert(a, a.Raised)
	a.State, a.Updated = "cleared", epoch.Add(3*time.Second)
	s.AddAlert(a, a.Updated)
	s.AddCampaign(fleet.Campaign{ID: "c1", State: "running", Started: epoch}, epoch)
	s.AddCampaign(fleet.Campaign{ID: "c1", State: "completed", Started: epoch, Nodes: map[string]fleet.Progress{"7": {NodeID: 7, State: "confirmed"}}}, epoch.Add(time.Minute))
	syncStore(t, s)
	ctx := context.Background()
	now := epoch.Add(time.Hour)

	evs, err := s.Events(ctx, fleet.EventQuery{}, now)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []string{"alert", "alert", "action", "node"}) {
		t.Fatalf("events newest first: %v", kinds)
	}
	if evs[0].NodeID != 7 || !strings.Contains(evs[0].Summary, "low_memory cleared") {
		t.Fatalf("alert event %+v", evs[0])
	}
	only, err := s.Events(ctx, fleet.EventQuery{Node: 7, Kind: "node", Limit: 1}, now)
	if err != nil || len(only) != 1 || only[0].Summary != "node 7 joined" {
		t.Fatalf("node 7 joins: %+v %v", only, err)
	}
	alerts, err := s.Alerts(ctx, fleet.EventQuery{Node: 7}, now)
	if err != nil || len(alerts) != 1 || alerts[0].State != "cleared" {
		t.Fatalf("alert history: %+v %v, want a1 cleared", alerts, err)
	}
	cs, err := s.Campaigns(ctx, 0)
	if err != nil || len(cs) != 1 || cs[0].State != "completed" || cs[0].Nodes["7"].State != "confirmed" {
		t.Fatalf("campaigns: %+v %v", cs, err)
	}
}

func TestRetention(t *testing.T) {
	s, _ := openTest(t, Options{RawRetention: time.Hour, RollupRetention: 2 * time.Hour})
	// One sample a minute for three hours: the last hour stays raw, the
	// last two as rollups.
	for i := range 180 {
		s.AddSample(Sample{Node: 3, T: epoch.Add(time.Duration(i) * time.Minute), Health: 50})
		if i == 0 {
			s.AddEvent(fleet.HistoryEvent{T: epoch, Kind: "node", NodeID: 3, Summary: "old"})
		}
		syncStore(t, s)
	}
	count := func(q string) int {
		var n int
		if err := s.db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	newest := epoch.Add(179 * time.Minute).Unix()
	if n := count(`SELECT count(*) FROM samples WHERE t < ` + itoa(newest-3600-600)); n != 0 {
		t.Errorf("%d raw samples older than the retention (and one pruning period)", n)
	}
	if n := count(`SELECT count(*) FROM samples`); n < 60 {
		t.Errorf("%d raw samples, want the last hour's", n)
	}
	if n := count(`SELECT count(*) FROM rollups WHERE t < ` + itoa(newest-7200-600)); n != 0 {
		t.Errorf("%d rollups older than the retention", n)
	}
	if n := count(`SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events, want the old one pruned", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestQueueFullDropsSamplesNotEvents(t *testing.T) {
	s, _ := openTest(t, Options{QueueSize: 4, FlushInterval: time.Hour, BatchSize: 1 << 20})
	// The writer is not woken (flush interval an hour, batch larger than
	// the queue): the fifth sample finds the queue full.
	for i := range 6 {
		s.AddSample(Sample{Node: 1, T: epoch.Add(time.Duration(i) * time.Second)})
	}
	for i := range 10 {
		s.AddEvent(fleet.HistoryEvent{T: epoch.Add(time.Duration(i) * time.Second), Kind: "topology", Summary: "x"})
	}
	syncStore(t, s)
	st := s.Stats()
	if st.SamplesDropped != 2 || st.SamplesWritten != 4 || st.EventsWritten != 10 {
		t.Fatalf("stats %+v: want 2 samples dropped, 4 written, all 10 events", st)
	}
}

func TestCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database\n", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if !errors.Is(err, fleet.ErrHistoryUnavailable) || !strings.Contains(err.Error(), "history unavailable: "+path) || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("corrupt file: %v", err)
	}
}

func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	// Another program holds the write lock for as long as the test runs.
	if _, err := other.Exec(`CREATE TABLE x (y); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{BusyTimeout: 100 * time.Millisecond})
	if !errors.Is(err, fleet.ErrHistoryUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("locked file: %v", err)
	}
}

func TestWriteFailureMakesQueriesUnavailable(t *testing.T) {
	s, path := openTest(t, Options{BusyTimeout: 100 * time.Millisecond})
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	s.AddSample(Sample{Node: 1, T: epoch})
	s.AddEvent(fleet.HistoryEvent{T: epoch, Kind: "node", Summary: "kept"})
	ctx := context.Background()
	if err := s.Sync(ctx); !errors.Is(err, fleet.ErrHistoryUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("write under another program's lock: %v", err)
	}
	if _, err := s.Series(ctx, fleet.SeriesQuery{Node: 1, Metric: "health"}, epoch); !errors.Is(err, fleet.ErrHistoryUnavailable) {
		t.Fatalf("query after a failed write: %v, want unavailable", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	syncStore(t, s)
	evs, err := s.Events(ctx, fleet.EventQuery{}, epoch.Add(time.Hour))
	if err != nil || len(evs) != 1 || evs[0].Summary != "kept" {
		t.Fatalf("after the lock: %+v %v, want the event kept", evs, err)
	}
	if st := s.Stats(); st.WriteErrors < 1 || st.SamplesDropped != 1 {
		t.Fatalf("stats %+v, want a failed batch and its sample dropped", st)
	}
}

// The default range ends at now and includes it: an alert raised at the
// very instant of the query is in its answer.
func TestDefaultRangeIncludesNow(t *testing.T) {
	s, _ := openTest(t, Options{})
	now := epoch.Add(time.Hour)
	a := fleet.Alert{ID: "a1", NodeID: 7, Type: "low_memory", Severity: "warning", State: "raised", Raised: now, Updated: now}
	s.AddAlert(a, now)
	syncStore(t, s)
	ctx := context.Background()
	if alerts, err := s.Alerts(ctx, fleet.EventQuery{}, now); err != nil || len(alerts) != 1 {
		t.Errorf("alerts at now: %+v %v, want a1", alerts, err)
	}
	if evs, err := s.Events(ctx, fleet.EventQuery{}, now); err != nil || len(evs) != 1 {
		t.Errorf("events at now: %+v %v, want the alert's", evs, err)
	}
}
