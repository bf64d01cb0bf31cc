package gateway

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/sim"
)

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHistory polls the history until ok holds, flushing the writer
// before each look; bounded by ctx (the simulated mesh runs in real time).
func waitHistory(t *testing.T, ctx context.Context, g *Gateway, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s, err := g.hist.open(); err == nil {
			s.Sync(ctx)
		}
		if ok() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("history: no %s", what)
		case <-tick.C:
		}
	}
}

// The gateway records its devices' telemetry, their coming online and
// operator actions, on the simulated mesh's clock, and serves them on the
// history routes.
func TestGatewayHistory(t *testing.T) {
	ctx, g := startReadyGateway(t, 3)
	base := "http://" + g.HTTPAddr + "/api/v1"
	device := lastDevice(g.cfg, 3)
	var series fleet.Series
	waitHistory(t, ctx, g, "free memory samples of the device", func() bool {
		if g.hist.now.Load() == 0 {
			return false // the range must be on the mesh's clock, which the node's first step sets
		}
		getJSON(t, base+"/nodes/"+itoa(device)+"/history?metric=free_memory_bytes&step=1s&from="+itoa(g.hist.clock().Add(-time.Hour).Unix()), &series)
		return len(series.Points) >= 2
	})
	if series.NodeID != device || series.StepS != 1 || series.Points[0].V <= 0 {
		t.Fatalf("series %+v", series)
	}
	// Times are the mesh's (virtual) clock, which the gateway answers in.
	if last := time.Unix(series.Points[len(series.Points)-1].T, 0); last.After(g.hist.clock()) || g.hist.clock().Sub(last) > time.Hour {
		t.Fatalf("last point at %s, gateway clock %s", last, g.hist.clock())
	}
	var evs struct{ Events []fleet.HistoryEvent }
	waitHistory(t, ctx, g, "online event of the device", func() bool {
		getJSON(t, base+"/events?kind=node&node="+itoa(device), &evs)
		return len(evs.Events) > 0
	})
	if !strings.Contains(evs.Events[0].Summary, "node "+itoa(device)) {
		t.Fatalf("node event %+v", evs.Events[0])
	}

	resp, err := http.Post(base+"/messages", "application/json", strings.NewReader(`{"to":"broadcast","msg":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitHistory(t, ctx, g, "action event of the message sent", func() bool {
		getJSON(t, base+"/events?kind=action", &evs)
		return len(evs.Events) > 0
	})
	var data map[string]string
	if err := json.Unmarshal(evs.Events[0].Data, &data); err != nil || data["via"] != "rest" || data["action"] != "message.send" || data["who"] == "" {
		t.Fatalf("action event %+v (%v)", evs.Events[0], err)
	}

	code, body := get(t, base+"/nodes/"+itoa(device)+"/history?metric=heap")
	if code != 400 || !strings.Contains(body, `metric \"heap\": not one of free_memory_bytes`) {
		t.Fatalf("unknown metric: %d %s", code, body)
	}
	if m := scrape(t, g); !strings.Contains(m, "meshfleet_history_up 1") || !strings.Contains(m, "meshfleet_history_samples_written_total") {
		t.Fatalf("history metrics:\n%s", grepLines(m, "history"))
	}
}

// historyUnavailable runs a gateway whose history database cannot be
// used: the live routes answer, the history routes say why with 503.
func historyUnavailable(t *testing.T, prepare func(path string), want string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	prepare(filepath.Join(cfg.StateDir, historyFile))
	g, _, done := startSimGateway(t, ctx, cfg, 2)
	defer func() { cancel(); <-done }()
	waitReady(t, ctx, g, done)
	base := "http://" + g.HTTPAddr + "/api/v1"
	if code, body := get(t, base+"/nodes"); code != 200 {
		t.Fatalf("live nodes: %d %s", code, body)
	}
	for _, path := range []string{"/nodes/1/history?metric=health", "/events", "/alerts/history", "/ota/history"} {
		code, body := get(t, base+path)
		if code != 503 || !strings.Contains(body, `"error":"history unavailable: `) || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s, want 503 history unavailable ... %s", path, code, body, want)
		}
	}
	if m := scrape(t, g); !strings.Contains(m, "meshfleet_history_up 0") {
		t.Fatalf("history metrics:\n%s", grepLines(m, "history"))
	}
}

func TestGatewayHistoryCorruptFile(t *testing.T) {
	historyUnavailable(t, func(path string) {
		if err := os.WriteFile(path, []byte(strings.Repeat("not sqlite ", 1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}, "file is not a database")
}

func TestGatewayHistoryLockedFile(t *testing.T) {
	var other *sql.DB
	historyUnavailable(t, func(path string) {
		var err error
		if other, err = sql.Open("sqlite", "file:"+path); err != nil {
			t.Fatal(err)
		}
		other.SetMaxOpenConns(1)
		// Another program holds the write lock while the gateway runs.
		if _, err := other.Exec(`CREATE TABLE x (y); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1)`); err != nil {
			t.Fatal(err)
		}
	}, "database is locked")
	other.Close()
}

func TestGatewayHistoryOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.History.Enabled = false
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.openHistory()
	_, err = g.Events(context.Background(), fleet.EventQuery{})
	if err == nil || err.Error() != "history unavailable: off in the config (history.enabled: false)" {
		t.Fatalf("history off: %v", err)
	}
}

func itoa[T ~uint32 | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

func TestHistoryConfigErrorsNameTheKey(t *testing.T) {
	for set, want := range map[string]string{
		"history.raw_retention=30s":   "config: history.raw_retention: must be at least 1m, got 30s",
		"history.rollup_retention=1h": "config: history.rollup_retention: must be at least history.raw_retention (48h0m0s), got 1h0m0s",
		"history.queue_size=0":        "config: history.queue_size: must be between 1 and 16777216 samples, got 0",
		"history.rawretention=1h":     `unknown key "history.rawretention"`,
	} {
		_, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n"), nil, []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", set, err, want)
		}
	}
}

// A campaign run to completion is in the campaign history with its
// per-node outcomes, and its start, each node's outcome and its end are
// "ota" events; the start is an operator action.
func TestGatewayHistoryCampaign(t *testing.T) {
	ctx, g := startReadyGateway(t, 2)
	device := lastDevice(g.cfg, 2)
	img := bytes.Repeat([]byte("history campaign image "), 400)
	im := uploadREST(t, g, "sensor", "ESP32", "2.0.0", img)
	c := startREST(t, g, fleet.CampaignRequest{Image: im.ID, Nodes: []uint32{device}, Mode: "broadcast"})
	base := "http://" + g.HTTPAddr + "/api/v1"
	var hist struct{ Campaigns []fleet.Campaign }
	waitHistory(t, ctx, g, "completed campaign", func() bool {
		getJSON(t, base+"/ota/history", &hist)
		return len(hist.Campaigns) == 1 && hist.Campaigns[0].State == "completed"
	})
	got := hist.Campaigns[0]
	if got.ID != c.ID || got.Image.Version != "2.0.0" || got.Completed != 1 || got.Nodes[itoa(device)].State != "confirmed" {
		t.Fatalf("campaign record %+v", got)
	}
	var evs struct{ Events []fleet.HistoryEvent }
	for _, want := range []string{"campaign " + c.ID + " completed", "node " + itoa(device) + " confirmed in campaign " + c.ID, "campaign " + c.ID + " running (sensor 2.0.0)"} {
		waitHistory(t, ctx, g, "ota event "+want, func() bool {
			getJSON(t, base+"/events?kind=ota", &evs)
			return slices.ContainsFunc(evs.Events, func(e fleet.HistoryEvent) bool { return strings.HasPrefix(e.Summary, want) })
		})
	}
	// The audit line, and so the action, comes once the response is out.
	waitHistory(t, ctx, g, "campaign.start action", func() bool {
		getJSON(t, base+"/events?kind=action", &evs)
		return len(evs.Events) > 0 && strings.Contains(evs.Events[0].Summary, "campaign.start")
	})
}

// A device that restarts shows as a reboot in its history; the layout
// the devices joined is a topology event.
func TestGatewayHistoryRebootsAndLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	g, sm, done := startSimGateway(t, ctx, cfg, 2)
	defer func() { cancel(); <-done }()
	waitReady(t, ctx, g, done)
	device := lastDevice(cfg, 2)
	base := "http://" + g.HTTPAddr + "/api/v1"
	since := func() string { return "&from=" + itoa(g.hist.clock().Add(-time.Hour).Unix()) }
	var up fleet.Series
	waitHistory(t, ctx, g, "samples with some uptime", func() bool {
		getJSON(t, base+"/nodes/"+itoa(device)+"/history?metric=uptime_s&step=1s"+since(), &up)
		return len(up.Points) > 0 && up.Points[len(up.Points)-1].Max >= 5
	})
	if err := sm.Realtime.Do(ctx, func(n *sim.Network) { n.Restart(n.Node(device)) }); err != nil {
		t.Fatal(err)
	}
	var reb fleet.Series
	waitHistory(t, ctx, g, "reboot", func() bool {
		getJSON(t, base+"/nodes/"+itoa(device)+"/history?metric=reboots&step=1h"+since(), &reb)
		n := 0.0
		for _, p := range reb.Points {
			n += p.V
		}
		return n == 1
	})
	var evs struct{ Events []fleet.HistoryEvent }
	waitHistory(t, ctx, g, "layout change with the device joining", func() bool {
		getJSON(t, base+"/events?kind=topology&limit=1000"+since(), &evs)
		return slices.ContainsFunc(evs.Events, func(e fleet.HistoryEvent) bool {
			var d struct{ Joined []uint32 }
			return json.Unmarshal(e.Data, &d) == nil && slices.Contains(d.Joined, device) && strings.HasPrefix(e.Summary, "layout changed: ")
		})
	})
}

// A database locked by another program when the gateway starts is opened
// once the lock goes, without a restart.
func TestGatewayHistoryReopensAfterTheLockGoes(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.StateDir, historyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	if _, err := other.Exec(`CREATE TABLE x (y); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.historyReopen = 20 * time.Millisecond
	g.openHistory()
	defer g.closeHistory()
	if _, err := g.hist.open(); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("history with the file locked: %v, want database is locked", err)
	}
	if _, err := other.Exec(`COMMIT`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.hist.reopened:
	case <-time.After(20 * time.Second):
		t.Fatal("history still off 20 s after the lock went")
	}
	if _, err := g.hist.open(); err != nil {
		t.Fatalf("history after the reopen: %v", err)
	}
	g.closeHistory()
	if _, err := g.hist.open(); err == nil {
		t.Fatal("history open after the gateway closed it")
	}
}
