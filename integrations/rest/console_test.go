package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

func TestAlertAck(t *testing.T) {
	srv, m := newServer(t, "tok")
	m.SetAlerts([]fleet.Alert{{ID: "2/low_memory", NodeID: 2, Type: "low_memory", State: "raised", Raised: time.Now()}})
	url := srv.URL + "/api/v1/alerts/2%2Flow_memory/ack"
	if code, body := do(t, "POST", url, "", nil); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d %s", code, body)
	}
	code, body := do(t, "POST", url, "tok", strings.NewReader(`{"by":"alice"}`))
	var a fleet.Alert
	if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.AckedBy != "alice (rest token)" || a.AckedAt == nil {
		t.Fatalf("ack: %d %s", code, body)
	}
	// Again, without a name: the first acknowledgement stays.
	if code, body := do(t, "POST", url, "tok", nil); code != 200 || !strings.Contains(body, `"acked_by":"alice (rest token)"`) {
		t.Fatalf("second ack: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/alerts", "tok", nil); code != 200 || !strings.Contains(body, `"acked_by":"alice (rest token)"`) {
		t.Fatalf("alerts after ack: %d %s", code, body)
	}
	for _, c := range []struct{ url, body, want string }{
		{srv.URL + "/api/v1/alerts/9%2Fnode_offline/ack", "", "not found"},
		{url, `{"who":"bob"}`, "by, the operator"},
		{url, `{"by":"` + strings.Repeat("x", 65) + `"}`, "at most 64 bytes"},
		{url, `{"by":"a\u0007b"}`, "printable"},
	} {
		code, body := do(t, "POST", c.url, "tok", strings.NewReader(c.body))
		if code < 400 || !strings.Contains(body, c.want) {
			t.Errorf("POST %s %s: %d %s, want an error saying %q", c.url, c.body, code, body, c.want)
		}
	}
}

// sseEvent is one Server-Sent Event as a client reads it.
type sseEvent struct{ name, data string }

func readEvents(t *testing.T, ctx context.Context, url, token string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				ch <- ev
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return ch, resp
}

func nextEvent(t *testing.T, ch <-chan sseEvent, name string) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second) // a bounded wait on real I/O
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before a %q event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event", name)
		}
	}
}

func TestStream(t *testing.T) {
	m := &fleettest.Memory{
		NodeList: []fleet.Node{{ID: 1, Status: "online", Gateway: true}, {ID: 2, Status: "offline"}},
		Sum:      fleet.Summary{NodeCount: 2, OnlineCount: 1, HealthScore: 60},
	}
	srv := httptest.NewServer(Handler(m, Config{Token: "tok", Stream: StreamConfig{MaxClients: 1, Interval: 50 * time.Millisecond}}))
	t.Cleanup(srv.Close)
	if code, body := do(t, "GET", srv.URL+"/api/v1/stream", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, resp := readEvents(t, ctx, srv.URL+"/api/v1/stream", "tok")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	nextEvent(t, ch, "hello")
	if ev := nextEvent(t, ch, "summary"); !strings.Contains(ev.data, `"health_score":60`) {
		t.Fatalf("summary %s", ev.data)
	}
	var u nodesUpdate
	if ev := nextEvent(t, ch, "nodes"); json.Unmarshal([]byte(ev.data), &u) != nil || !u.Full || len(u.Nodes) != 2 {
		t.Fatalf("first nodes event %s", ev.data)
	}

	// One client at a time here: a second is refused.
	if code, body := do(t, "GET", srv.URL+"/api/v1/stream", "tok", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "event streams are open") {
		t.Fatalf("second stream: %d %s", code, body)
	}

	// A node changes and one goes: only that is sent.
	m.Update(func(m *fleettest.Memory) {
		m.NodeList = []fleet.Node{{ID: 1, Status: "online", Gateway: true, Health: 90}}
	})
	for {
		ev := nextEvent(t, ch, "nodes")
		if json.Unmarshal([]byte(ev.data), &u) != nil {
			t.Fatalf("nodes event %s", ev.data)
		}
		if len(u.Nodes) > 0 || len(u.Removed) > 0 {
			if u.Full || len(u.Nodes) != 1 || u.Nodes[0].Health != 90 || len(u.Removed) != 1 || u.Removed[0] != 2 {
				t.Fatalf("update %s", ev.data)
			}
			break
		}
	}

	// Events of the gateway pass through as they come.
	m.Publish(fleet.Event{Alert: &fleet.Alert{ID: "1/low_memory", NodeID: 1, State: "raised"}})
	if ev := nextEvent(t, ch, "alert"); !strings.Contains(ev.data, `"alert_id":"1/low_memory"`) {
		t.Fatalf("alert %s", ev.data)
	}
	m.Publish(fleet.Event{Progress: &fleet.Progress{NodeID: 2, Campaign: "c1", State: "downloading"}})
	if ev := nextEvent(t, ch, "progress"); !strings.Contains(ev.data, `"campaign":"c1"`) {
		t.Fatalf("progress %s", ev.data)
	}

	// The stream ends with the request's context, and its slot is free again.
	cancel()
	for range ch {
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		ch2, resp2 := readEvents(t, ctx2, srv.URL+"/api/v1/stream", "tok")
		if resp2.StatusCode == http.StatusOK {
			nextEvent(t, ch2, "hello")
			cancel2()
			break
		}
		cancel2()
		if time.Now().After(deadline) {
			t.Fatal("the stream's slot was not freed after its client went")
		}
		// Bounded poll: the server notices the closed connection on its own schedule.
		time.Sleep(20 * time.Millisecond)
	}
}
