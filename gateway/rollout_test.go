package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
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
			if e := r.Event; e == nil || e.Kind != "state" {
				continue
			}
			if r.Event.To == want {
				return *r
			}
			if final(r.Event.To) {
				t.Fatalf("rollout %s ended %s (%s), want %s", id, r.State, r.Reason, want)
			}
		}
	}
}

func final(s string) bool {
	return s == "completed" || s == "failed" || s == "aborted" || s == "superseded"
}

// waitDevicesOnline waits until n devices are online, looking again on
// every fleet event and at least every 50 ms (a node coming online is not
// a fleet event); bounded by ctx.
func waitDevicesOnline(t *testing.T, ctx context.Context, g *Gateway, n int) {
	t.Helper()
	ch := g.Subscribe(ctx)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
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
		select {
		case <-ch:
		case <-tick.C:
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
	// Every transition is in the history.
	s, err := g.hist.open()
	if err != nil {
		t.Fatal(err)
	}
	s.Sync(ctx)
	evs, err := g.Events(ctx, fleet.EventQuery{Kind: "rollout", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	for _, e := range evs {
		sums = append(sums, e.Summary)
	}
	all := strings.Join(sums, "\n")
	for _, want := range []string{"rollout sensor-2 completed", "rollout sensor-2: wave 1 started", "rollout sensor-2: wave 0 passed", "→ passed"} {
		if !strings.Contains(all, want) {
			t.Errorf("history lacks %q:\n%s", want, all)
		}
	}

	// An older image is a downgrade: refused unless forced.
	old := uploadREST(t, g, "sensor", "ESP32", "1.5.0", compress.FirmwareLike(8<<10, 38))
	if code, _, body := startRolloutREST(t, g, `{"id":"down","image":"`+old.ID+`","plan":{"soak":"1s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	down, err := g.GetRollout(ctx, "down")
	if err != nil {
		t.Fatal(err)
	}
	if down.Count["skipped"] != devices || !strings.Contains(down.Nodes[0].Reason, "downgrade needs force") {
		t.Fatalf("a downgrade without force: %v %+v", down.Count, down.Nodes)
	}
	if code, _, body := startRolloutREST(t, g, `{"id":"down-forced","force":true,"image":"`+old.ID+`","plan":{"soak":"1s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	if r := w.waitState(t, ctx, "down-forced", "completed"); r.Count["passed"] != devices {
		t.Fatalf("a forced downgrade: %v", r.Count)
	}
}

// TestRolloutApprovePauseResume: with approval between waves the rollout
// waits after each wave; approve starts the next, a pause there holds it,
// and resume goes on into the next wave.
func TestRolloutApprovePauseResume(t *testing.T) {
	const devices = 4
	ctx, g := startReadyGateway(t, devices)
	waitDevicesOnline(t, ctx, g, devices)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 32))
	w := watchRollouts(ctx, g)
	code, _, body := startRolloutREST(t, g, `{"id":"gated","image":"`+img.ID+`","plan":{"waves":[{"count":1},{"count":2},{"percent":100}],"approval":true,"soak":"2s","gates":{"baseline_samples":1}}}`)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	r := w.waitState(t, ctx, "gated", "awaiting_approval")
	if r.Wave != 0 || r.Count["passed"] != 1 || r.Count["pending"] != devices-1 {
		t.Fatalf("after the canary: wave %d, %v", r.Wave, r.Count)
	}
	if code, resp := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/rollouts/gated/resume", "", nil); code != http.StatusConflict {
		t.Fatalf("resume while awaiting approval: %d %s, want 409", code, resp)
	}
	controlRolloutREST(t, g, "gated", "approve", "")
	r = w.waitState(t, ctx, "gated", "awaiting_approval")
	if r.Wave != 1 || r.Count["passed"] != 3 {
		t.Fatalf("after the second wave: wave %d, %v", r.Wave, r.Count)
	}
	if p := controlRolloutREST(t, g, "gated", "pause", ""); p.State != "paused" {
		t.Fatalf("pause: %+v", p)
	}
	controlRolloutREST(t, g, "gated", "resume", "")
	if r = w.waitState(t, ctx, "gated", "completed"); r.Count["passed"] != devices {
		t.Fatalf("completed with %v", r.Count)
	}
	var list []fleet.Rollout
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/rollouts", &list)
	if len(list) != 1 || list[0].ID != "gated" || list[0].State != "completed" {
		t.Fatalf("GET /api/v1/rollouts: %+v", list)
	}
}

// TestRolloutAbortRollsBack: a rollback policy is refused while the
// nodes' images are not stored; once they run a stored image, an abort
// with rollback after the canary puts the canary back on it.
func TestRolloutAbortRollsBack(t *testing.T) {
	const devices = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	stopOnCleanup(t, cancel, done)
	waitReady(t, ctx, g, done)
	waitDevicesOnline(t, ctx, g, devices)
	v2 := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 33))
	v3 := uploadREST(t, g, "sensor", "ESP32", "3.0.0", compress.FirmwareLike(8<<10, 34))
	code, _, body := startRolloutREST(t, g, `{"id":"early","image":"`+v3.ID+`","plan":{"policy":"rollback"}}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "previous image in the firmware store") {
		t.Fatalf("rollback policy without the previous images: %d %s, want 400 naming them", code, body)
	}
	w := watchRollouts(ctx, g)
	if code, _, body := startRolloutREST(t, g, `{"id":"to-v2","image":"`+v2.ID+`","plan":{"soak":"1s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	w.waitState(t, ctx, "to-v2", "completed")
	// At once: a node's md5 may be unknown to the collector from its first
	// frame on v2 until it answers the firmware query; what the campaign
	// recorded it confirmed stands for it, so the rollback policy is not
	// refused meanwhile.
	code, _, body = startRolloutREST(t, g, `{"id":"to-v3","image":"`+v3.ID+`","plan":{"waves":[{"count":1},{"percent":100}],"approval":true,"soak":"1s","policy":"rollback","gates":{"baseline_samples":1}}}`)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	r := w.waitState(t, ctx, "to-v3", "awaiting_approval")
	var canary uint32
	for _, n := range r.Nodes {
		if n.State == "passed" {
			canary = n.ID
		}
	}
	got, err := g.GetRollout(ctx, "to-v3")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got.Nodes {
		if n.State == "passed" {
			canary = n.ID
		}
	}
	if canary == 0 {
		t.Fatalf("no canary passed: %+v", got.Nodes)
	}
	controlRolloutREST(t, g, "to-v3", "abort", `{"reason":"field reports","rollback":true}`)
	r = w.waitState(t, ctx, "to-v3", "aborted")
	if r.Count["rolled_back"] != 1 || r.Reason != "field reports" {
		t.Fatalf("aborted: %v (%s), want the canary rolled back", r.Count, r.Reason)
	}
	// The node's own slot store is the truth of what it runs.
	var active string
	if err := sm.Realtime.Do(ctx, func(*sim.Network) { active, _ = sm.Stores[canary].Active() }); err != nil {
		t.Fatal(err)
	}
	if active != v2.MD5 {
		t.Fatalf("canary %d runs %s after the rollback, want v2 %s", canary, active, v2.MD5)
	}
}

// TestRolloutBadRequests: bad specs are 400s that name the field.
func TestRolloutBadRequests(t *testing.T) {
	ctx, g := startReadyGateway(t, 1)
	_ = ctx
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(4<<10, 35))
	many := strings.Repeat("1,", 10_001) + "1"
	for _, c := range []struct{ body, want string }{
		{`{"image":"` + img.ID + `","plan":{"soak":"two minutes"}}`, "plan.soak"},
		{`{"image":"` + img.ID + `","plan":{"gates":{"baseline_wait":"x"}}}`, "plan.gates.baseline_wait"},
		{`{"image":"` + img.ID + `","plan":{"waves":[{"count":1,"percent":5}]}}`, "plan.waves[0]"},
		{`{"image":"` + img.ID + `","plan":{"policy":"maybe"}}`, "plan.policy"},
		{`{"image":"` + img.ID + `","targets":{"nodes":[` + many + `]}}`, "targets.nodes"},
		{`{"image":"nope"}`, "not in the firmware store"},
		{`{"image":"` + img.ID + `","colour":"red"}`, "colour"},
		{`{"id":"a b","image":"` + img.ID + `"}`, "id"},
	} {
		code, _, body := startRolloutREST(t, g, c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%.80s: %d %s, want 400 naming %s", c.body, code, body, c.want)
		}
	}
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/rollouts/none/approve", "", nil); code != http.StatusNotFound {
		t.Errorf("approve an unknown rollout: %d %s, want 404", code, body)
	}
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/rollouts/none/explode", "", nil); code != http.StatusNotFound {
		t.Errorf("unknown action: %d %s, want 404", code, body)
	}
}

// TestRolloutResumesAfterRestart: a gateway stopped while a rollout
// awaits approval between waves has it again after a restart, in the same
// state and wave; approved, it goes on and completes.
func TestRolloutResumesAfterRestart(t *testing.T) {
	const devices = 3
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	sc := scenario.LiveConfig{Nodes: devices, Seed: 5, Speed: 25, Model: "esp32", Epoch: time.Now().UTC().Truncate(time.Second)}
	runCtx, stop := context.WithCancel(ctx)
	g, _, done := startSimGatewayWith(t, runCtx, cfg, sc, nil)
	waitReady(t, ctx, g, done)
	waitDevicesOnline(t, ctx, g, devices)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 36))
	w := watchRollouts(ctx, g)
	if code, _, body := startRolloutREST(t, g, `{"id":"across","image":"`+img.ID+`","plan":{"waves":[{"count":1},{"percent":100}],"approval":true,"soak":"1s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	w.waitState(t, ctx, "across", "awaiting_approval")
	before, err := g.GetRollout(ctx, "across")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := g.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	sc.Epoch = sum.Timestamp.Add(time.Second)
	g2, _, done2 := startSimGatewayWith(t, ctx, cfg, sc, nil)
	defer func() {
		cancel()
		<-done2
	}()
	waitReady(t, ctx, g2, done2)
	var after fleet.Rollout
	getJSON(t, "http://"+g2.HTTPAddr+"/api/v1/rollouts/across", &after)
	if after.State != "awaiting_approval" || after.Wave != before.Wave || after.Count["passed"] != 1 {
		t.Fatalf("after the restart: %s wave %d %v; before: %s wave %d %v", after.State, after.Wave, after.Count, before.State, before.Wave, before.Count)
	}
	waitDevicesOnline(t, ctx, g2, devices)
	w2 := watchRollouts(ctx, g2)
	controlRolloutREST(t, g2, "across", "approve", "")
	if r := w2.waitState(t, ctx, "across", "completed"); r.Count["passed"] != devices {
		t.Fatalf("completed with %v", r.Count)
	}
}

// rolloutStateIs matches an ota/status message of rollout id entering
// state.
func rolloutStateIs(id, state string) func([]byte) bool {
	return func(p []byte) bool {
		var m struct {
			Rollout *fleet.Rollout `json:"rollout"`
		}
		if json.Unmarshal(p, &m) != nil || m.Rollout == nil || m.Rollout.ID != id {
			return false
		}
		e := m.Rollout.Event
		return e != nil && e.Kind == "state" && e.To == state
	}
}

// TestRolloutOverMQTT: the rollout actions of ota/control start, show,
// approve and list a rollout, each answered on ota/control/response; its
// transitions are on ota/status; bad requests name what is missing.
func TestRolloutOverMQTT(t *testing.T) {
	const devices = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cfg := testConfig(t)
	g, _, done := startSimGateway(t, ctx, cfg, devices)
	stopOnCleanup(t, cancel, done)
	waitReady(t, ctx, g, done)
	rec, c := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(devices+1))
	k := &controller{t: t, ctx: ctx, rec: rec, c: c}
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 37))

	k.fail(map[string]any{"action": "rollout_start"}, `needs "spec"`)
	k.fail(map[string]any{"action": "rollout_approve"}, `needs "rollout"`)
	k.fail(map[string]any{"action": "rollout_explode", "rollout": "x"}, "rollout_start, rollout_status")
	k.fail(map[string]any{"action": "rollout_start", "spec": map[string]any{"image": img.ID, "plan": map[string]any{"soak": "later"}}}, "plan.soak")
	k.fail(map[string]any{"action": "rollout_status", "rollout": "none"}, "not found")

	started := k.ok(map[string]any{"action": "rollout_start", "spec": map[string]any{"id": "over-mqtt", "image": img.ID,
		"plan": map[string]any{"waves": []any{map[string]any{"count": 1}, map[string]any{"percent": 100}}, "approval": true, "soak": "1s", "gates": map[string]any{"baseline_samples": 1}}}})
	if started["id"] != "over-mqtt" || started["waves"] != 2.0 {
		t.Fatalf("rollout_start answered %v", started)
	}
	rec.waitFor(t, ctx, "mf/ota/status", rolloutStateIs("over-mqtt", "awaiting_approval"))
	if st := k.ok(map[string]any{"action": "rollout_status", "rollout": "over-mqtt"}); st["state"] != "awaiting_approval" {
		t.Fatalf("rollout_status: %v", st)
	}
	k.ok(map[string]any{"action": "rollout_approve", "rollout": "over-mqtt"})
	rec.waitFor(t, ctx, "mf/ota/status", rolloutStateIs("over-mqtt", "completed"))
	r := k.do(map[string]any{"action": "rollout_status"})
	list, _ := r.Data.([]any)
	if !r.OK || len(list) != 1 {
		t.Fatalf("rollout_status of every rollout: %+v", r)
	}
	k.fail(map[string]any{"action": "rollout_abort", "rollout": "over-mqtt"}, "completed")
}

// TestRolloutWaitsForOperatorCampaign: a campaign an operator started for
// the same role and hardware is not superseded by a rollout's; the
// rollout's updates start once it ended.
func TestRolloutWaitsForOperatorCampaign(t *testing.T) {
	const devices = 2
	ctx, g := startReadyGateway(t, devices)
	waitDevicesOnline(t, ctx, g, devices)
	other := uploadREST(t, g, "sensor", "ESP32", "1.9.0", compress.FirmwareLike(8<<10, 39))
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 40))
	// A target that is not in the mesh keeps the campaign running.
	held := startREST(t, g, fleet.CampaignRequest{Image: other.ID, Nodes: []uint32{4242}})
	w := watchRollouts(ctx, g)
	if code, _, body := startRolloutREST(t, g, `{"id":"polite","image":"`+img.ID+`","plan":{"soak":"1s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	// Wait until the rollout asked for its updates.
	for updating := false; !updating; {
		select {
		case ev := <-w.ch:
			if r := ev.Rollout; r != nil && r.ID == "polite" && r.Event != nil && r.Event.Kind == "node" && r.Event.To == "updating" {
				updating = true
			}
		case <-ctx.Done():
			t.Fatal("the rollout never started an update")
		}
	}
	if c, err := g.Campaign(ctx, held.ID); err != nil || c.State != "running" {
		t.Fatalf("the operator's campaign: %+v %v, want it still running", c, err)
	}
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota/"+held.ID+"/abort", "", nil); code != http.StatusOK {
		t.Fatalf("abort: %d %s", code, body)
	}
	if r := w.waitState(t, ctx, "polite", "completed"); r.Count["passed"] != devices {
		t.Fatalf("completed with %v", r.Count)
	}
}
