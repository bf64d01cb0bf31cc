package main

import (
	"context"
	"strings"
	"testing"
)

func TestBenchGatewaySmall(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "bench", "gateway", "--nodes", "20", "--seconds", "4")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20 nodes at 1 Hz for 4 s (virtual): 80 telemetry packages", "GOMAXPROCS 1", "decode alone", "full path", "N (1 Hz)",
		"20 nodes online at the end", " 0 dropped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchGatewayBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--nodes", "0"}, {"--seconds", "1"}, {"--cores", "0"}} {
		_, _, err := execute(t, context.Background(), nil, append([]string{"bench", "gateway"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "--nodes and --cores must be positive and --seconds at least 2") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
