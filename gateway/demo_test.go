package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunDemo(t *testing.T) {
	var out bytes.Buffer
	res, err := RunDemo(context.Background(), DemoConfig{Nodes: 6, Speed: 20, ImageSize: 64 << 10, Duration: 60 * time.Second,
		MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", JSON: true, StopWhenDone: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 6 || res.Failed != 0 || res.OTASeconds == 0 || res.Online != 7 {
		t.Fatalf("demo result %+v\n%s", res, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["event"] != "started" || !strings.HasPrefix(first["mqtt"].(string), "mqtt://127.0.0.1:") ||
		!strings.HasPrefix(lines[0], `{"dashboard":"http://127.0.0.1:`) {
		t.Fatalf("first line %q", lines[0])
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not JSON: %q", l)
		}
	}
}

// TestRunDemoTextShowsDashboardFirst: the demo's first line is where to
// open the dashboard. The demo stops once it has written it.
func TestRunDemoTextShowsDashboardFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := &firstLine{done: make(chan struct{})}
	go func() { <-out.done; cancel() }()
	res, err := RunDemo(ctx, DemoConfig{Nodes: 2, Speed: 20, MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"}, out)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(out.buf.String(), "\n")
	if want := "meshfleet demo: the dashboard is at " + res.Dashboard + " "; !strings.HasPrefix(first, want) || !strings.HasPrefix(res.Dashboard, "http://127.0.0.1:") {
		t.Fatalf("first line %q, want it to start with %q", first, want)
	}
}

// firstLine keeps what is written and closes done at the first newline.
type firstLine struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	had := bytes.Contains(f.buf.Bytes(), []byte("\n"))
	f.buf.Write(p)
	if !had && bytes.Contains(p, []byte("\n")) {
		close(f.done)
	}
	return len(p), nil
}
