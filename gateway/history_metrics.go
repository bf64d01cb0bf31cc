package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfleet/meshfleet/integrations/prom"
)

// historyCollector exports the history's state and counters.
type historyCollector struct {
	g                                                                   *Gateway
	up, samples, dropped, events, eventsDropped, errors, queue, rollups *prometheus.Desc
}

func newHistoryCollector(g *Gateway) *historyCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(prom.Namespace, "history", name), help, nil, nil)
	}
	return &historyCollector{g: g,
		up:            d("up", "1 while the history database is open and its latest write worked; 0 when it is off, corrupt, locked or failing (the history routes answer 503 with the reason)."),
		samples:       d("samples_written_total", "Status samples written to the history."),
		dropped:       d("samples_dropped_total", "Status samples dropped: the writer's queue was full (history.queue_size) or their batch failed."),
		rollups:       d("rollups_written_total", "1-minute rollup rows written or merged."),
		events:        d("events_written_total", "Events, alert and campaign records written to the history."),
		eventsDropped: d("events_dropped_total", "Events dropped because the database failed for so long that 100000 waited."),
		errors:        d("write_errors_total", "History batches whose transaction failed."),
		queue:         d("queue_samples", "Status samples waiting for the history writer."),
	}
}

// Describe implements prometheus.Collector.
func (c *historyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.samples, c.dropped, c.rollups, c.events, c.eventsDropped, c.errors, c.queue} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *historyCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.g.hist.open()
	up := 0.0
	if err == nil && s.Err() == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	if s == nil {
		return
	}
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(c.samples, prometheus.CounterValue, float64(st.SamplesWritten))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.SamplesDropped))
	ch <- prometheus.MustNewConstMetric(c.rollups, prometheus.CounterValue, float64(st.RollupsWritten))
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(st.EventsWritten))
	ch <- prometheus.MustNewConstMetric(c.eventsDropped, prometheus.CounterValue, float64(st.EventsDropped))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queued))
}
