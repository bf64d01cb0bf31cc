package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/gateway"
	"github.com/meshfleet/meshfleet/scenario"
)

// startSimGateway runs a gateway with an API token on a simulated mesh of
// devices until the test ends.
func startSimGateway(t *testing.T, devices int, token string) *gateway.Gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := gateway.DefaultConfig()
	cfg.Node.ID = 1
	cfg.MQTT.Enabled = false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Token = token
	cfg.Firmware.Dir = filepath.Join(dir, "firmware")
	cfg.StateDir = filepath.Join(dir, "state")
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := g.NewSimMesh(scenario.LiveConfig{Nodes: devices, Seed: 9, Speed: 25})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	simCtx, simStop := context.WithCancel(context.Background())
	go sm.Realtime.Run(simCtx)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, sm.Driver); simStop() }()
	t.Cleanup(func() {
		cancel()
		select { // a bounded wait on the real run loop saving its state
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start")
	}
	return g
}

// waitRolloutState waits on the gateway's events for rollout id to enter
// state want.
func waitRolloutState(t *testing.T, ctx context.Context, events <-chan fleet.Event, id, want string) {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("rollout %s never reached %s", id, want)
		case ev := <-events:
			if r := ev.Rollout; r != nil && r.ID == id && r.Event != nil && r.Event.Kind == "state" && r.Event.To == want {
				return
			}
		}
	}
}

// TestRolloutCommands drives a rollout on a gateway over REST with the
// CLI: start from flags, status, approve between waves, status at the end;
// a wrong token is an error naming the problem.
func TestRolloutCommands(t *testing.T) {
	const devices, token = 3, "s3cret"
	g := startSimGateway(t, devices, token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := compress.FirmwareLike(8<<10, 41)
	img, _, err := g.AddImage(ctx, fleet.ImageUpload{Role: "sensor", Hardware: "ESP32", Version: "2.0.0"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	events := g.Subscribe(ctx)
	// Wait until every device reported (the rollout's targets are the
	// nodes the gateway knows), looking again on every fleet event and at
	// least every 50 ms: a node coming online is not a fleet event.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		nodes, err := g.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		online := 0
		for _, n := range nodes {
			if !n.Gateway && n.Status == "online" {
				online++
			}
		}
		if online == devices {
			break
		}
		select {
		case <-events:
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%d of %d devices online", online, devices)
		}
	}
	gw := []string{"--gateway", g.HTTPAddr, "--token", token}
	if _, _, err := execute(t, ctx, nil, "rollout", "status", "--gateway", g.HTTPAddr, "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v, want a 401 error", err)
	}
	out, _, err := execute(t, ctx, nil, append([]string{"rollout", "start", "--id", "cli", "--image", img.ID, "--waves", "1,100%", "--soak", "1s", "--approval"}, gw...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "cli\t") || !strings.Contains(out, "wave 1/2") {
		t.Fatalf("start printed %q", out)
	}
	waitRolloutState(t, ctx, events, "cli", "awaiting_approval")
	out, _, err = execute(t, ctx, nil, append([]string{"rollout", "status", "cli"}, gw...)...)
	if err != nil || !strings.Contains(out, "awaiting_approval") || strings.Count(out, "  node ") != devices {
		t.Fatalf("status: %v %q", err, out)
	}
	if _, _, err := execute(t, ctx, nil, append([]string{"rollout", "approve", "cli"}, gw...)...); err != nil {
		t.Fatal(err)
	}
	waitRolloutState(t, ctx, events, "cli", "completed")
	out, _, err = execute(t, ctx, nil, append([]string{"rollout", "status"}, gw...)...)
	if err != nil || !strings.Contains(out, "cli\tcompleted") || !strings.Contains(out, "passed=3") {
		t.Fatalf("status: %v %q", err, out)
	}
	if _, _, err := execute(t, ctx, nil, append([]string{"rollout", "resume", "cli"}, gw...)...); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("resume a completed rollout: %v, want a 409 error", err)
	}
	if _, _, err := execute(t, ctx, nil, append([]string{"rollout", "start", "--image", img.ID, "--soak", "soon"}, gw...)...); err == nil || !strings.Contains(err.Error(), "--soak") {
		t.Fatalf("bad --soak: %v", err)
	}
	// A JSON spec on stdin; the answer as JSON. Every node runs the image
	// already: each is skipped.
	spec := `{"id":"again","image":"` + img.ID + `","plan":{"soak":"1s"}}`
	out, _, err = execute(t, ctx, strings.NewReader(spec), append([]string{"rollout", "start", "--spec", "-", "--json"}, gw...)...)
	if err != nil || !strings.Contains(out, `"id":"again"`) || !strings.Contains(out, `"skipped":3`) {
		t.Fatalf("start --spec -: %v %q", err, out)
	}
	if _, _, err := execute(t, ctx, strings.NewReader(`{"image":"`+img.ID+`","plan":{"soak":"soon"}}`), append([]string{"rollout", "start", "--spec", "-"}, gw...)...); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "plan.soak") {
		t.Fatalf("a bad spec: %v, want the gateway's 400 naming plan.soak", err)
	}
}
