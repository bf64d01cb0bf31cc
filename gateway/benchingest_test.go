package gateway

import (
	"testing"
	"time"
)

// The capacity benchmark's run on a small fleet: every package reaches
// the model (every node online), the history (every sample written, none
// dropped) and MQTT (the per-node documents of each status cycle), so the
// CPU it reports is that of the whole path.
func TestBenchIngestSmall(t *testing.T) {
	const nodes, seconds = 50, 30
	res, err := BenchIngest(t.Context(), IngestBenchConfig{Nodes: nodes, Seconds: seconds, Dir: t.TempDir(), Publish: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Online != nodes {
		t.Errorf("%d of %d nodes online at the end", res.Online, nodes)
	}
	// Each node's samples, and the gateway's own, one a second.
	if want := uint64(nodes * seconds); res.SamplesWritten < want || res.SamplesWritten > want+seconds+2 || res.SamplesDropped != 0 {
		t.Errorf("history wrote %d samples and dropped %d, want %d (and the gateway's own) and 0", res.SamplesWritten, res.SamplesDropped, want)
	}
	if res.MQTTCycles != 3 || res.MQTTMessages < int64(res.MQTTCycles*nodes) {
		t.Errorf("%d MQTT messages in %d status cycles, want at least a document per node per cycle", res.MQTTMessages, res.MQTTCycles)
	}
	if res.EventsDropped != 0 {
		t.Errorf("%d events dropped", res.EventsDropped)
	}
	if !(res.DecodeRate > 0 && res.FullRate > 0 && res.CostRatio > 1) {
		t.Errorf("rates: decode %v, full %v, ratio %v", res.DecodeRate, res.FullRate, res.CostRatio)
	}
}
