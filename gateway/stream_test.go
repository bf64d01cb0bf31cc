package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamEndsWithGateway: an open event stream ends when the gateway
// stops, rather than holding the connection and its handler past it.
func TestStreamEndsWithGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	gctx, stop := context.WithCancel(ctx)
	g, _, done := startSimGateway(t, gctx, cfg, 2)
	waitReady(t, ctx, g, done)

	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.HTTPAddr+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "event: hello") {
		t.Fatalf("first line %q (%v)", line, err)
	}
	stop()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, r); ended <- err }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second): // a bounded wait on real I/O
		t.Fatal("the event stream is still open after the gateway stopped")
	}
	<-done
}
