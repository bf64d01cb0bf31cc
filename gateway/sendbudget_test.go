package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
)

// A message larger than the mesh takes is refused before it is sent, and
// a flood is held to the airtime budget; both are counted in /metrics.
func TestSendIsBoundedBySizeAndAirtime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	g, _, done := startSimGateway(t, ctx, cfg, 2)
	// Stop the gateway before t.TempDir is removed: it saves its state on the way out.
	defer func() {
		cancel()
		select { // done is empty if waitReady already took Run's result
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()
	waitReady(t, ctx, g, done)
	clock := time.Unix(1_000_000, 0)
	g.sends.now = func() time.Time { return clock }
	sent := func() uint64 {
		var s mesh.Stats
		g.do(ctx, func(_ time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) { s = n.Stats() })
		return s.BytesTx
	}

	before := sent()
	err := g.SendBroadcast(ctx, strings.Repeat("x", 2<<20))
	if !errors.Is(err, fleet.ErrTooLarge) || !strings.Contains(err.Error(), "send.max_size") {
		t.Fatalf("2 MB broadcast: %v, want ErrTooLarge naming send.max_size", err)
	}
	if err := g.SendSingle(ctx, cfg.Node.ID+1000, strings.Repeat("y", cfg.Send.MaxSize)); !errors.Is(err, fleet.ErrTooLarge) {
		t.Fatalf("single of max_size bytes of text (more as a package): %v, want ErrTooLarge", err)
	}
	// The node's own traffic goes on meanwhile, but nothing near 2 MB.
	if after := sent(); after-before > 1<<20 {
		t.Fatalf("refused messages reached the mesh: %d bytes queued", after-before)
	}

	// 9,000 messages in 10 s: the budget is 10/s in bursts of 10.
	var ok, limited int
	for i := range 9000 {
		if i%900 == 0 && i > 0 {
			clock = clock.Add(time.Second)
		}
		switch err := g.SendBroadcast(ctx, "hello"); {
		case err == nil:
			ok++
		case errors.Is(err, fleet.ErrRateLimited):
			limited++
		default:
			t.Fatal(err)
		}
	}
	if ok != 10+9*10 || limited != 9000-ok {
		t.Fatalf("flood of 9000 in 10 s: %d sent, %d refused; want 100 sent", ok, limited)
	}

	body := scrape(t, g)
	for _, want := range []string{
		`meshfleet_gateway_sends_refused_total{reason="too_large"} 2`,
		`meshfleet_gateway_sends_refused_total{reason="rate_limited"} 8900`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "refused"))
		}
	}
}

func TestSendBudgetBytes(t *testing.T) {
	now := time.Unix(0, 0)
	b := newSendBudget(SendConfig{MaxSize: 8192, Rate: 1000, RateBytes: 16384}, func() time.Time { return now })
	for range 2 {
		if err := b.admit(8192); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.admit(100); !errors.Is(err, fleet.ErrRateLimited) {
		t.Fatalf("third package in the same second: %v", err)
	}
	now = now.Add(time.Second / 2) // 8 KiB of budget back
	if err := b.admit(8192); err != nil {
		t.Fatalf("after half a second: %v", err)
	}
}
