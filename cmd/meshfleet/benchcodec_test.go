package main

import (
	"testing"

	"github.com/meshfleet/meshfleet/protocol"
)

// The benchmark's samples must be what it claims: stock-exact messages
// that our codec round-trips byte for byte (timings are not asserted).
func TestCodecSamplesRoundTrip(t *testing.T) {
	for _, s := range codecSamples() {
		p, err := protocol.Decode(s.msg)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := string(p.AppendJSON(nil)); got != string(s.msg) {
			t.Fatalf("%s: re-encoded differently", s.name)
		}
	}
	p, _ := protocol.Decode(codecSamples()[0].msg)
	if ns, ok := p.(*protocol.NodeSync); !ok || ns.Size() != 100 {
		t.Fatalf("node sync sample is %T, not a 100-node layout", p)
	}
}
