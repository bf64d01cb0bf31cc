package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfleet/meshfleet/integrations/prom"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
)

// gatewayCollector exports the gateway's own mesh node's counters, read
// from the node at scrape time.
type gatewayCollector struct {
	g       *Gateway
	invalid *prometheus.Desc
	refused *prometheus.Desc
}

func newGatewayCollector(g *Gateway) *gatewayCollector {
	return &gatewayCollector{g: g,
		invalid: prometheus.NewDesc(prometheus.BuildFQName(prom.Namespace, "gateway", "invalid_packages_total"),
			"Packages the gateway's mesh node received that could not be parsed and were dropped, by reason (header: not a package; body: its fields do not decode).",
			[]string{"reason"}, nil),
		refused: prometheus.NewDesc(prometheus.BuildFQName(prom.Namespace, "gateway", "sends_refused_total"),
			"Application messages into the mesh (MQTT to/..., REST) refused, by reason (too_large: over send.max_size; rate_limited: over the airtime budget; client_rate_limited: over the sender's share of it, send.per_client_share).",
			[]string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.invalid
	ch <- c.refused
}

// Collect implements prometheus.Collector.
func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.g.sends.tooLarge.Load()), "too_large")
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.g.sends.rateLimited.Load()), "rate_limited")
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.g.sends.clientRateLimited.Load()), "client_rate_limited")
	var s mesh.Stats
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.g.do(ctx, func(_ time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) { s = n.Stats() }); err != nil {
		return // not running: no node to report on
	}
	ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.CounterValue, float64(s.InvalidPackages.Header), mesh.InvalidHeader)
	ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.CounterValue, float64(s.InvalidPackages.Body), mesh.InvalidBody)
}
