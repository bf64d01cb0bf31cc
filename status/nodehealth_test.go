package status

import (
	"testing"
	"time"
)

func TestNodeHealthMatchesHealth(t *testing.T) {
	c := NewCollector(CollectorConfig{}, epoch)
	c.model.Observe(epoch, nodeA, SourceTelemetry, func(m *Metrics) { m.FreeMemory = 6000; m.LatencyUs = 300_000; m.Uptime = 5 })
	c.model.Observe(epoch.Add(time.Second), nodeB, SourceTelemetry, func(m *Metrics) { m.FreeMemory = 40_000 })
	for _, want := range c.Health().Nodes {
		got, ok := c.NodeHealth(want.Node)
		if !ok || got != want {
			t.Errorf("node %d: NodeHealth %+v, Health has %+v", want.Node, got, want)
		}
	}
	if _, ok := c.NodeHealth(0xdead); ok {
		t.Error("a node that never reported has a health")
	}
}
