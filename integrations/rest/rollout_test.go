package rest

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

// TestRolloutRoutes: a rollout request's durations may be strings or
// nanoseconds; a bad one, an unknown field or action is refused naming
// it; every start and command is audited.
func TestRolloutRoutes(t *testing.T) {
	logs := &syncBuffer{}
	m := &fleettest.Memory{}
	srv := httptest.NewServer(Handler(m, Config{Token: "s3cret", Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	defer srv.Close()
	code, body := do(t, "POST", srv.URL+"/api/v1/rollouts", "s3cret", strings.NewReader(
		`{"id":"r1","image":"abc","plan":{"soak":"2m","update_timeout":60000000000,"gates":{"offline_grace":"45s","baseline_wait":"1m30s"}}}`))
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	p := m.Rollouts["r1"].Spec.Plan
	if p.Soak != 2*time.Minute || p.UpdateTimeout != time.Minute || p.Gates.OfflineGrace != 45*time.Second || p.Gates.BaselineWait != 90*time.Second {
		t.Fatalf("plan durations read as %v %v %v %v", p.Soak, p.UpdateTimeout, p.Gates.OfflineGrace, p.Gates.BaselineWait)
	}
	for _, c := range []struct{ body, want string }{
		{`{"image":"abc","plan":{"soak":"soon"}}`, `plan.soak \"soon\"`},
		{`{"image":"abc","plan":{"gates":{"offline_grace":"x"}}}`, "plan.gates.offline_grace"},
		{`{"image":"abc","plan":{"sock":"2m"}}`, `unknown field \"sock\"`},
		{`{"image":"abc","colour":1}`, `unknown field \"colour\"`},
	} {
		if code, body := do(t, "POST", srv.URL+"/api/v1/rollouts", "s3cret", strings.NewReader(c.body)); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.body, code, body, c.want)
		}
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/rollouts/r1/abort", "s3cret", strings.NewReader(`{"reason":"field reports","rollback":true}`)); code != http.StatusOK || !strings.Contains(body, `"aborted"`) {
		t.Fatalf("abort: %d %s", code, body)
	}
	if m.Rollouts["r1"].Reason != "field reports" {
		t.Fatalf("abort reason: %+v", m.Rollouts["r1"])
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/rollouts/r1/explode", "s3cret", nil); code != http.StatusNotFound || !strings.Contains(body, "pause, resume, approve, abort") {
		t.Fatalf("unknown action: %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/rollouts", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	var list []fleet.Rollout
	if code, body := do(t, "GET", srv.URL+"/api/v1/rollouts", "s3cret", nil); code != http.StatusOK || !strings.Contains(body, `"r1"`) {
		t.Fatalf("list: %d %s %v", code, body, list)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=rollout.start target="image abc id r1" result=ok`,
		`action=rollout.start .* result="400 .*plan.soak`,
		`action=rollout.start .* result="400 .*plan.gates.offline_grace`,
		`action=rollout.start .* result="400 .*sock`,
		`action=rollout.start .* result="400 .*colour`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=rollout.abort target="rollout r1" result=ok`,
		`action=rollout.explode target="rollout r1" result="404`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs)
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d:\n%s\nwant %s", i, lines[i], w)
		}
	}
}
