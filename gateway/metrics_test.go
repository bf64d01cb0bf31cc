package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
)

func scrape(t *testing.T, g *Gateway) string {
	t.Helper()
	resp, err := http.Get("http://" + g.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Packages the gateway's node cannot parse are counted in /metrics.
func TestMetricsCountInvalidPackages(t *testing.T) {
	ctx, g := startReadyGateway(t, 2)
	var received bool
	if err := g.do(ctx, func(now time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) {
		if cs := n.Connections(); len(cs) > 0 {
			n.Receive(now, cs[0].Conn, []byte("{not a package"))
			n.Receive(now, cs[0].Conn, []byte("garbage"))
			// Well-formed, but wrong types: counted as a bad body.
			n.Receive(now, cs[0].Conn, []byte(`{"type":"nine","dest":1,"from":952}`))
			n.Receive(now, cs[0].Conn, []byte(`{"type":4,"dest":1,"from":952,"msg":{"type":"x"}}`))
			received = true
		}
	}); err != nil || !received {
		t.Fatalf("no connection to receive on (err %v)", err)
	}
	body := scrape(t, g)
	if !strings.Contains(body, `meshfleet_gateway_invalid_packages_total{reason="header"} 2`) ||
		!strings.Contains(body, `meshfleet_gateway_invalid_packages_total{reason="body"} 2`) ||
		!strings.Contains(body, "# TYPE meshfleet_gateway_invalid_packages_total counter") {
		t.Fatalf("/metrics lacks the invalid package counter:\n%s", grepLines(body, "invalid"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The gateway's own node reports its firmware in the format every
// meshfleet node uses.
func TestGatewayNodeFirmwareVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	g, _, done := startSimGateway(t, ctx, cfg, 1)
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()
	waitReady(t, ctx, g, done)
	want := fleet.MeshfleetFirmware(Version)
	if want != "meshfleet "+Version {
		t.Fatalf("MeshfleetFirmware(%q) = %q", Version, want)
	}
	for {
		nodes, err := g.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Gateway && n.Firmware != "" {
				if n.Firmware != want {
					t.Fatalf("gateway node firmware %q, want %q", n.Firmware, want)
				}
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gateway node has no firmware: %+v", nodes)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
