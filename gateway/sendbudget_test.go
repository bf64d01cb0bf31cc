package gateway

import (
	"errors"
	"fmt"
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
	ctx, g := startReadyGateway(t, 2)
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
	if err := g.SendSingle(ctx, g.cfg.Node.ID+1000, strings.Repeat("y", g.cfg.Send.MaxSize)); !errors.Is(err, fleet.ErrTooLarge) {
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
		if err := b.admit("", 8192); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.admit("", 100); !errors.Is(err, fleet.ErrRateLimited) {
		t.Fatalf("third package in the same second: %v", err)
	}
	now = now.Add(time.Second / 2) // 8 KiB of budget back
	if err := b.admit("", 8192); err != nil {
		t.Fatalf("after half a second: %v", err)
	}
}

// Each sender gets send.per_client_share of the budget: one flooding
// sender leaves the rest to the others, and the global budget still
// applies to all of them together.
func TestSendBudgetPerSenderShare(t *testing.T) {
	now := time.Unix(0, 0)
	b := newSendBudget(SendConfig{MaxSize: 8192, Rate: 10, RateBytes: 1 << 20, PerClientShare: 0.5}, func() time.Time { return now })
	flood := func(sender string, n int) (sent int) {
		for range n {
			switch err := b.admit(sender, 10); {
			case err == nil:
				sent++
			case !errors.Is(err, fleet.ErrRateLimited):
				t.Fatal(err)
			}
		}
		return sent
	}
	if n := flood("mqtt client A", 100); n != 5 {
		t.Fatalf("A sent %d of 100, want its share of 5", n)
	}
	if err := b.admit("mqtt client A", 10); err == nil || !strings.Contains(err.Error(), "send.per_client_share") {
		t.Fatalf("A over its share: %v", err)
	}
	if n := flood("mqtt client B", 3); n != 3 {
		t.Fatalf("B sent %d of 3 while A floods", n)
	}
	// C's share is not used up, but the budget is (5 + 3 of 10).
	if n := flood("rest", 5); n != 2 {
		t.Fatalf("REST sent %d, want the 2 left of the budget", n)
	}
	if b.clientRateLimited.Load() != 96 || b.rateLimited.Load() != 3 {
		t.Fatalf("refusals: %d client_rate_limited, %d rate_limited; want 96, 3", b.clientRateLimited.Load(), b.rateLimited.Load())
	}
	// A refilled share is the same as a new one: a second later A sends again.
	now = now.Add(time.Second)
	if n := flood("mqtt client A", 100); n != 5 {
		t.Fatalf("A sent %d after a second, want 5", n)
	}
}

// Many client ids do not grow the senders' buckets without bound.
func TestSendBudgetSendersBounded(t *testing.T) {
	now := time.Unix(0, 0)
	b := newSendBudget(SendConfig{MaxSize: 8192, Rate: 10, RateBytes: 16384, PerClientShare: 0.5}, func() time.Time { return now })
	for i := range 10 * maxSenders {
		if i%100 == 0 {
			now = now.Add(10 * time.Millisecond)
		}
		b.admit(fmt.Sprint("mqtt client ", i), 10)
	}
	if n := b.senderCount(); n > maxSenders {
		t.Fatalf("%d senders' buckets kept, at most %d", n, maxSenders)
	}
	// The senders of a burst that ended are dropped as their shares refill.
	now = now.Add(time.Minute)
	b.admit("mqtt client late", 10)
	if n := b.senderCount(); n > maxSenders {
		t.Fatalf("%d senders' buckets kept after a minute", n)
	}
	// A flooding sender whose bucket is in use keeps its (empty) share
	// while other ids come and go.
	for range 10 {
		b.admit("mqtt client flooder", 10)
	}
	for i := range 2 * maxSenders {
		b.admit(fmt.Sprint("mqtt client churn ", i), 10)
		b.admit("mqtt client flooder", 10)
	}
	if err := b.admit("mqtt client flooder", 10); err == nil || !strings.Contains(err.Error(), "per_client_share") {
		t.Fatalf("the flooder's share was reset by other ids coming and going: %v", err)
	}
}
