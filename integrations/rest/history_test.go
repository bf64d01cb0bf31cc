package rest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
	"github.com/meshfleet/meshfleet/history"
)

var histEpoch = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// historyServer is the API on a fake fleet whose history is a real store
// holding an hour of node 2 and one event of each kind.
func historyServer(t *testing.T, token string) string {
	t.Helper()
	srv, m := newServer(t, token)
	s, err := history.Open(filepath.Join(t.TempDir(), "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 3600 {
		s.AddSample(history.Sample{Node: 2, T: histEpoch.Add(time.Duration(i) * time.Second), FreeMemory: uint32(40000 - i), Hops: 1})
	}
	s.AddEvent(fleet.HistoryEvent{T: histEpoch, Kind: "node", NodeID: 2, Summary: "node 2 online (report)"})
	s.AddAlert(fleet.Alert{ID: "a1", NodeID: 2, Type: "low_memory", Severity: "warning", State: "raised", Raised: histEpoch, Updated: histEpoch}, histEpoch)
	s.AddCampaign(fleet.Campaign{ID: "c1", State: "completed", Started: histEpoch, Nodes: map[string]fleet.Progress{"2": {NodeID: 2, State: "confirmed"}}}, histEpoch)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m.Update(func(m *fleettest.Memory) { m.History = s.Service(func() time.Time { return histEpoch.Add(time.Hour) }) })
	return srv.URL + "/api/v1"
}

func TestNodeHistoryRoute(t *testing.T) {
	base := historyServer(t, "")
	code, body := do(t, "GET", base+"/nodes/2/history?metric=free_memory_bytes&from=2026-12-07T00:00:00Z&to="+itoa(histEpoch.Add(10*time.Minute).Unix())+"&step=5m", "", nil)
	var s fleet.Series
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if s.NodeID != 2 || s.Metric != "free_memory_bytes" || s.StepS != 300 || len(s.Points) != 2 || s.Points[0].T != histEpoch.Unix() ||
		s.Points[0].Min != 40000-299 || s.Points[0].Max != 40000 {
		t.Fatalf("series %s", body)
	}
	for _, key := range []string{`"node_id":2`, `"from":"2026-12-07T00:00:00Z"`, `"step_s":300`, `"points":[{"t":`, `"v":`, `"min":`, `"max":`} {
		if !strings.Contains(body, key) {
			t.Errorf("no %s in %s", key, body)
		}
	}
	// Defaults: the last 24 h of the gateway's clock, 60 s steps.
	code, body = do(t, "GET", base+"/nodes/2/history?metric=hops", "", nil)
	if code != 200 || !strings.Contains(body, `"step_s":60`) || !strings.Contains(body, `"to":"2026-12-07T01:00:00Z"`) {
		t.Fatalf("defaults: %d %s", code, body)
	}
	code, body = do(t, "GET", base+"/nodes/99/history?metric=hops", "", nil)
	if code != 200 || !strings.Contains(body, `"points":[]`) {
		t.Fatalf("node without history: %d %s", code, body)
	}
}

func TestHistoryRoutesRefuseBadParameters(t *testing.T) {
	base := historyServer(t, "")
	for url, want := range map[string]string{
		"/nodes/2/history":                                                               "metric is required, one of free_memory_bytes",
		"/nodes/2/history?metric=heap":                                                   `metric \"heap\": not one of free_memory_bytes, latency_ms`,
		"/nodes/x/history?metric=hops":                                                   `node id \"x\"`,
		"/nodes/2/history?metric=hops&from=monday":                                       `from=\"monday\": want RFC 3339`,
		"/nodes/2/history?metric=hops&step=soon":                                         `step=\"soon\": want a duration`,
		"/nodes/2/history?metric=hops&step=1s&from=0":                                    "points, at most 10000",
		"/nodes/2/history?metric=hops&from=2026-12-07T01:00:00Z&to=2026-12-07T00:00:00Z": "is not before to",
		"/nodes/2/history?metric=hops&metric=uptime_s":                                   `parameter \"metric\" given 2 times`,
		"/nodes/2/history?metric=hops&sort=t":                                            `unknown parameter \"sort\" (known: metric, from, to, step)`,
		"/events?kind=reboot":                                                            `kind \"reboot\": not one of topology, node, alert, ota, action, rollout`,
		"/events?limit=5000":                                                             "limit 5000: want 1 to 1000",
		"/events?limit=-1":                                                               `limit=\"-1\": want a positive number`,
		"/events?node=0":                                                                 `node=\"0\": want a node id`,
		"/alerts/history?kind=alert":                                                     `unknown parameter \"kind\"`,
		"/ota/history?limit=x":                                                           `limit=\"x\"`,
	} {
		code, body := do(t, "GET", base+url, "", nil)
		if code != 400 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s, want 400 with %s", url, code, body, want)
		}
	}
}

func TestEventAlertCampaignHistoryRoutes(t *testing.T) {
	base := historyServer(t, "tok")
	if code, _ := do(t, "GET", base+"/events", "", nil); code != 401 {
		t.Fatalf("events without the token: %d", code)
	}
	code, body := do(t, "GET", base+"/events?node=2&from=2026-12-06T00:00:00Z", "tok", nil)
	var evs struct{ Events []fleet.HistoryEvent }
	if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs.Events) != 2 || evs.Events[0].Kind != "alert" && evs.Events[1].Kind != "alert" {
		t.Fatalf("events: %d %s", code, body)
	}
	code, body = do(t, "GET", base+"/alerts/history?node=2", "tok", nil)
	if code != 200 || !strings.Contains(body, `{"alerts":[{"alert_id":"a1"`) {
		t.Fatalf("alerts: %d %s", code, body)
	}
	code, body = do(t, "GET", base+"/ota/history?limit=5", "tok", nil)
	if code != 200 || !strings.Contains(body, `{"campaigns":[{"id":"c1"`) || !strings.Contains(body, `"state":"confirmed"`) {
		t.Fatalf("campaigns: %d %s", code, body)
	}
}

func TestHistoryRoutesUnavailable(t *testing.T) {
	srv, _ := newServer(t, "")
	for _, path := range []string{"/nodes/2/history?metric=hops", "/events", "/alerts/history", "/ota/history"} {
		code, body := do(t, "GET", srv.URL+"/api/v1"+path, "", nil)
		if code != 503 || !strings.Contains(body, `{"error":"history unavailable`) {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/nodes", "", nil); code != 200 {
		t.Fatalf("live route: %d", code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
