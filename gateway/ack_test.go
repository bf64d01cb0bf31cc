package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// waitAlert waits on events for an alert of node and type not cleared.
func waitAlert(t *testing.T, ctx context.Context, events <-chan fleet.Event, node uint32, typ string) fleet.Alert {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if a := ev.Alert; a != nil && a.NodeID == node && a.Type == typ && a.State != "cleared" {
				return *a
			}
		case <-ctx.Done():
			t.Fatalf("no %s alert for node %d", typ, node)
		}
	}
}

// TestAlertAckPersists acknowledges a node_offline alert over REST: the
// alert documents and the event stream show who and when, and a gateway
// started again on the same state_dir still shows it.
func TestAlertAckPersists(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	const devices = 3
	gctx, stop := context.WithCancel(ctx)
	g, sm, done := startSimGateway(t, gctx, cfg, devices)
	waitReady(t, ctx, g, done)
	events := g.Subscribe(ctx)
	waitOnline(t, ctx, g, devices+1)
	victim := lastDevice(cfg, devices)
	crashDevice(t, ctx, sm, victim)
	raised := waitAlert(t, ctx, events, victim, "node_offline")

	ackURL := "http://" + g.HTTPAddr + "/api/v1/alerts/" + url.PathEscape(raised.ID) + "/ack"
	code, body := call(t, "POST", ackURL, "application/json", []byte(`{"by":"alice"}`))
	if code != http.StatusOK || !strings.Contains(body, `"acked_by":"alice (rest anonymous)"`) || !strings.Contains(body, `"acked_at"`) {
		t.Fatalf("ack: %d %s", code, body)
	}
	for {
		a := waitAlert(t, ctx, events, victim, "node_offline")
		if a.AckedBy != "" {
			break
		}
	}
	if a, ok := restAlert(t, g, victim); !ok || a.AckedBy != "alice (rest anonymous)" || a.AckedAt == nil {
		t.Fatalf("alert after ack %+v", a)
	}
	// The alert history shows it too.
	if st := g.hist.store.Load(); st != nil {
		if err := st.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		var h struct{ Alerts []fleet.Alert }
		// An explicit end: the default one, the history's clock, may be the very instant of the raise.
		getJSON(t, fmt.Sprintf("http://%s/api/v1/alerts/history?node=%d&to=%d", g.HTTPAddr, victim, raised.Raised.Add(time.Hour).Unix()), &h)
		if len(h.Alerts) == 0 || h.Alerts[0].AckedBy != "alice (rest anonymous)" {
			t.Fatalf("alert history %+v", h.Alerts)
		}
	} else {
		t.Fatal("no history store")
	}
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/alerts/4242%2Fnode_offline/ack", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown alert: %d %s", code, body)
	}
	stop()
	<-done

	g2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := g2.acks.apply(raised); a.AckedBy != "alice (rest anonymous)" {
		t.Fatalf("after a restart the alert is %+v", a)
	}
	// A new occurrence of the same alert is not acknowledged.
	again := raised
	again.Raised = raised.Raised.Add(time.Minute)
	if a := g2.acks.apply(again); a.AckedBy != "" {
		t.Fatalf("a later occurrence is acknowledged: %+v", a)
	}
}

func TestAlertAcksFileCorrupt(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, acksFile), []byte("{nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), acksFile) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("New with a corrupt %s: %v", acksFile, err)
	}
}

// waitOnline waits until n nodes are online.
func waitOnline(t *testing.T, ctx context.Context, g *Gateway, n int) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond) // bounded poll of the real-time simulation
	defer tick.Stop()
	for {
		if s, err := g.Summary(ctx); err == nil && s.OnlineCount >= n {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("fewer than %d nodes online", n)
		}
	}
}
