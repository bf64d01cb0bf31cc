package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
)

// startRolloutREST posts a rollout request (JSON text) and returns the
// status code and the rollout or the error body.
func startRolloutREST(t *testing.T, g *Gateway, body string) (int, fleet.Rollout, string) {
	t.Helper()
	code, resp := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/rollouts", "application/json", []byte(body))
	var r fleet.Rollout
	if code == http.StatusCreated {
		if err := json.Unmarshal([]byte(resp), &r); err != nil {
			t.Fatal(err)
		}
	}
	return code, r, resp
}

func controlRolloutREST(t *testing.T, g *Gateway, id, action, body string) fleet.Rollout {
	t.Helper()
	code, resp := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/rollouts/"+id+"/"+action, "application/json", []byte(body))
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", action, id, code, resp)
	}
	var r fleet.Rollout
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// rolloutWatch follows the gateway's rollout events.
type rolloutWatch struct{ ch <-chan fleet.Event }

func watchRollouts(ctx context.Context, g *Gateway) *rolloutWatch {
	return &rolloutWatch{ch: g.Subscribe(ctx)}
}

// waitState waits for an event that shows rollout id in state want,
// failing on a final state that is not it.
func (w *rolloutWatch) waitState(t *testing.T, ctx context.Context, id, want string) fleet.Rollout {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("rollout %s never reached %s", id, want)
		case ev := <-w.ch:
			r := ev.Rollout
			if r == nil || r.ID != id {
				continue
			}
			if r.State == want {
				return *r
			}
			if final(r.State) {
				t.Fatalf("rollout %s ended %s (%s), want %s", id, r.State, r.Reason, want)
			}
		}
	}
}

func final(s string) bool {
	return s == "completed" || s == "failed" || s == "aborted" || s == "superseded"
}

// waitDevicesOnline waits until n devices report a role (full reports).
func waitDevicesOnline(t *testing.T, ctx context.Context, g *Gateway, n int) {
	t.Helper()
	ch := g.Subscribe(ctx)
	for {
		nodes, err := g.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, nd := range nodes {
			if !nd.Gateway && nd.Status == "online" {
				k++
			}
		}
		if k >= n {
			return
		}
		select { // any fleet event: look again
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%d of %d devices online", k, n)
		}
	}
}

// TestRolloutTwoWavesOverREST: a good image in a canary of one and then
// the rest, with a short soak, completes with every device on the image;
// its transitions are in the history.
func TestRolloutTwoWavesOverREST(t *testing.T) {
	const devices = 4
	ctx, g := startReadyGateway(t, devices)
	waitDevicesOnline(t, ctx, g, devices)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 31))
	w := watchRollouts(ctx, g)
	code, r, body := startRolloutREST(t, g, `{"id":"sensor-2","image":"`+img.ID+`","plan":{"waves":[{"count":1},{"percent":100}],"soak":"3s","gates":{"baseline_samples":1}}}`)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	if r.Waves != 2 || r.Spec.Plan.Soak.Seconds() != 3 {
		t.Fatalf("started %+v", r)
	}
	done := w.waitState(t, ctx, "sensor-2", "completed")
	if done.Count["passed"] != devices {
		t.Fatalf("completed with %v, want %d passed", done.Count, devices)
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !n.Gateway && !strings.EqualFold(n.FirmwareMD5, img.MD5) {
			t.Errorf("node %d runs %s, want %s", n.ID, n.FirmwareMD5, img.MD5)
		}
	}
	var got fleet.Rollout
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/rollouts/sensor-2", &got)
	if got.State != "completed" || len(got.Nodes) != devices {
		t.Fatalf("GET: %+v", got)
	}
}
