package rest

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

func TestPatchNodeSetsNameTagsNotes(t *testing.T) {
	srv, _ := newServer(t, "")
	code, body := do(t, "PATCH", srv.URL+"/api/v1/nodes/2", "", strings.NewReader(`{"name":"Shed","tags":["out","east"],"notes":"on the north wall"}`))
	var n fleet.Node
	if code != 200 || json.Unmarshal([]byte(body), &n) != nil || n.Name != "Shed" || len(n.Tags) != 2 || n.Notes != "on the north wall" {
		t.Fatalf("patch: %d %s", code, body)
	}
	// The node document shows them.
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes/2", "", nil); code != 200 || !strings.Contains(body, `"name":"Shed","tags":["out","east"],"notes":"on the north wall"`) {
		t.Fatalf("node document: %d %s", code, body)
	}
	for _, c := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/v1/nodes/2", `{"nmae":"x"}`, 400, `unknown field \"nmae\"`},
		{"/api/v1/nodes/2", `{"tags":"out"}`, 400, "request body"},
		{"/api/v1/nodes/abc", `{"name":"x"}`, 400, "decimal"},
		{"/api/v1/nodes/9", `{"name":"x"}`, 404, "not found"},
	} {
		if code, body := do(t, "PATCH", srv.URL+c.path, "", strings.NewReader(c.body)); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("PATCH %s %s: %d %s, want %d %q", c.path, c.body, code, body, c.code, c.want)
		}
	}
}

func TestForgetNodeRefusesAnOnlineNodeUnlessForced(t *testing.T) {
	srv, m := newServer(t, "")
	if code, body := do(t, "DELETE", srv.URL+"/api/v1/nodes/1", "", nil); code != 409 || !strings.Contains(body, "online") {
		t.Fatalf("forget online node: %d %s, want 409", code, body)
	}
	if code, body := do(t, "DELETE", srv.URL+"/api/v1/nodes/2?force=maybe", "", nil); code != 400 || !strings.Contains(body, `force=\"maybe\"`) {
		t.Fatalf("bad force: %d %s, want 400", code, body)
	}
	if code, body := do(t, "DELETE", srv.URL+"/api/v1/nodes/2", "", nil); code != 200 || strings.TrimSpace(body) != `{"forgotten":2}` {
		t.Fatalf("forget offline node: %d %s", code, body)
	}
	if code, body := do(t, "DELETE", srv.URL+"/api/v1/nodes/1?force=1", "", nil); code != 200 || strings.TrimSpace(body) != `{"forgotten":1}` {
		t.Fatalf("forced forget: %d %s", code, body)
	}
	if nodes, _ := m.Nodes(t.Context()); len(nodes) != 0 {
		t.Fatalf("nodes left: %+v", nodes)
	}
	if code, _ := do(t, "DELETE", srv.URL+"/api/v1/nodes/2", "", nil); code != 404 {
		t.Fatalf("forgetting again: %d, want 404", code)
	}
}

func TestNodeFirmwareHistory(t *testing.T) {
	srv, m := newServer(t, "")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m.Update(func(m *fleettest.Memory) {
		m.FirmwareLog = map[uint32][]fleet.FirmwareRecord{2: {{Version: "1.0", MD5: "aa", FirstSeen: t0, LastSeen: t0.Add(time.Hour)}}}
	})
	code, body := do(t, "GET", srv.URL+"/api/v1/nodes/2/firmware", "", nil)
	want := `{"node_id":2,"firmware":[{"version":"1.0","md5":"aa","first_seen":"2026-12-01T00:00:00Z","last_seen":"2026-12-01T01:00:00Z"}]}`
	if code != 200 || strings.TrimSpace(body) != want {
		t.Fatalf("firmware: %d %s\nwant %s", code, body, want)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes/1/firmware", "", nil); code != 200 || strings.TrimSpace(body) != `{"node_id":1,"firmware":[]}` {
		t.Fatalf("no history: %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/nodes/9/firmware", "", nil); code != 404 {
		t.Fatalf("unknown node: %d", code)
	}
}

// Campaign requests take the registry's targets: the fields reach the
// service as sent, and unknown ones are still refused.
func TestStartCampaignTakesRegistryTargets(t *testing.T) {
	srv, m := newServer(t, "")
	m.Update(func(m *fleettest.Memory) { m.ImageList = []fleet.Image{{ID: "img1", MD5: "aa"}} })
	code, body := do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{"image":"img1","tags":["east"],"names":["Shed"],"outdated":true,"max_concurrent":3}`))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	m.Update(func(m *fleettest.Memory) {
		r := m.Requests[0]
		if r.Tags[0] != "east" || r.Names[0] != "Shed" || !r.Outdated || r.MaxConcurrent != 3 {
			t.Errorf("request %+v", r)
		}
	})
	if code, body := do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{"image":"img1","max_concurent":3}`)); code != 400 || !strings.Contains(body, "max_concurent") {
		t.Fatalf("typo: %d %s", code, body)
	}
}

// Registry changes and forgets are audited like other operator actions.
func TestRegistryAuditLines(t *testing.T) {
	logs := &syncBuffer{}
	m := &fleettest.Memory{NodeList: []fleet.Node{{ID: 2, Status: "online"}}}
	srv := httptest.NewServer(Handler(m, Config{Token: "s3cret", Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	defer srv.Close()
	do(t, "PATCH", srv.URL+"/api/v1/nodes/2", "s3cret", strings.NewReader(`{"name":"Shed"}`))
	do(t, "DELETE", srv.URL+"/api/v1/nodes/2", "s3cret", nil)
	do(t, "DELETE", srv.URL+"/api/v1/nodes/2?force=1", "s3cret", nil)
	do(t, "GET", srv.URL+"/api/v1/nodes/2/firmware", "s3cret", nil)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=node.update target="node 2" result=ok`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=node.forget target="node 2" result="409 node 2 is online.*"`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=node.forget target="node 2 forced" result=ok`,
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
