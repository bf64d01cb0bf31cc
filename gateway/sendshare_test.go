package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/scenario"
)

// One MQTT client flooding <prefix>/to/... uses at most its share of the
// airtime budget: another client's messages still get into the mesh, and
// the flood is counted as client_rate_limited.
func TestSendShareFloodingClientLeavesRoomForOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	logs := newLogCapture()
	g, _, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: 2, Seed: 3, Speed: 25, Model: "esp32"}, slog.New(logs.handler()))
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()
	waitReady(t, ctx, g, done)
	// The budget does not refill during the test: 10 messages in all.
	clock := time.Unix(1_000_000, 0)
	decisions := make(chan string, 64) // senders, one per message decided
	g.sends.mu.Lock()
	g.sends.now = func() time.Time { return clock }
	g.sends.decided = func(sender string, _ error) {
		select {
		case decisions <- sender:
		default:
		}
	}
	g.sends.mu.Unlock()
	rec, _ := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", nil) // the bridge is up and subscribed once it published

	_, flooder := observe(t, ctx, brokerURL(g), "flooder")
	for i := range 30 {
		if err := flooder.Publish(ctx, "mf/to/broadcast", []byte(fmt.Sprint("flood ", i)), false); err != nil {
			t.Fatal(err)
		}
	}
	_, quiet := observe(t, ctx, brokerURL(g), "quiet")
	for i := range 3 {
		if err := quiet.Publish(ctx, "mf/to/broadcast", []byte(fmt.Sprint("hello ", i)), false); err != nil {
			t.Fatal(err)
		}
	}
	sent := func(client string) int {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		n := 0
		for _, r := range logs.recs {
			if r.msg == "audit" && r.attrs["action"] == "message.send" && r.attrs["client"] == client && r.attrs["result"] == "ok" {
				n++
			}
		}
		return n
	}
	for sent("quiet") < 3 {
		select {
		case <-logs.ch:
		case <-ctx.Done():
			t.Fatalf("the quiet client sent %d of its 3 messages; the flooder sent %d", sent("quiet"), sent("flooder"))
		}
	}
	// Every flood message is decided before the counts are read: MQTT
	// gives no order between the two clients' messages.
	flood := 0
	for flood < 30 {
		select {
		case sender := <-decisions:
			if strings.Contains(sender, "flooder") {
				flood++
			}
		case <-ctx.Done():
			t.Fatalf("%d of the flooder's 30 messages decided", flood)
		}
	}
	if n := sent("flooder"); n != 5 {
		t.Errorf("the flooder sent %d messages, want its share of 5 (send.per_client_share 0.5 of send.rate 10)", n)
	}
	// REST callers share one share: a second later (the budget full
	// again) 5 of 8 messages get in.
	g.sends.mu.Lock()
	clock = clock.Add(time.Second)
	g.sends.mu.Unlock()
	accepted := 0
	for i := range 8 {
		code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/messages", "application/json", []byte(fmt.Sprintf(`{"to":"broadcast","msg":"rest %d"}`, i)))
		switch {
		case code == http.StatusAccepted:
			accepted++
		case code != http.StatusTooManyRequests || !strings.Contains(body, "send.per_client_share"):
			t.Fatalf("REST message %d: %d %s", i, code, body)
		}
	}
	if accepted != 5 {
		t.Errorf("REST sent %d of 8, want the REST share of 5", accepted)
	}
	body := scrape(t, g)
	for _, want := range []string{
		`meshfleet_gateway_sends_refused_total{reason="client_rate_limited"} 28`,
		`meshfleet_gateway_sends_refused_total{reason="rate_limited"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "refused"))
		}
	}
}
