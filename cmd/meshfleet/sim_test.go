package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestSimCommandJSON(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "--nodes", "8", "--topology", "chain", "--seed", "4", "--duration", "3m", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"converged_at_s", "broadcast_delivered_once", "single_delivered",
		"max_time_offset_us", "virtual_s", "wall_s"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if rep["broadcast_delivered_once"] != 1.0 || rep["single_delivered"] != 1.0 || rep["virtual_s"] != 180.0 {
		t.Errorf("report %v", rep)
	}
	if c, ok := rep["converged_at_s"].(float64); !ok || c <= 0 {
		t.Errorf("converged_at_s %v", rep["converged_at_s"])
	}
}

func TestSimCommandTable(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "sim", "--nodes", "5", "--duration", "2m", "--link", "esp32")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5 nodes, random, esp32 link, seed 1", "converged after", "100.0% of 20", "virtual time"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimCommandNotConverged(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "sim", "--nodes", "30", "--topology", "chain", "--duration", "1ms", "--json")
	if err == nil || !strings.Contains(err.Error(), "did not converge") {
		t.Fatalf("err %v, want a convergence error", err)
	}
	if !strings.Contains(out, `"converged_at_s":null`) {
		t.Errorf("report not printed or converged: %s", out)
	}
	if strings.Contains(err.Error(), "nest") {
		t.Errorf("a 30-node chain is blamed on JSON nesting: %v", err)
	}
}

// A chain too long for painlessMesh's JSON parser says so.
func TestSimCommandChainTooLong(t *testing.T) {
	_, _, err := execute(t, context.Background(), nil, "sim", "--nodes", "200", "--topology", "chain", "--duration", "1ms", "--json")
	want := "a 200-node chain nests node-sync JSON 397 levels deep; painlessMesh's parser stops at 255 " +
		"(chains longer than 129 nodes cannot converge; use a tree or random topology)"
	if err == nil || !strings.Contains(err.Error(), "did not converge") || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want a convergence error ending %q", err, want)
	}
}

func TestSimCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--topology", "ring"},
		{"sim", "--link", "esp9000"},
		{"sim", "--loss", "1.5"},
		{"sim", "--nodes", "1"},
		{"sim", "--duration", "-1s"},
		{"sim", "--broadcasts", "-3"},
	} {
		if _, _, err := execute(t, context.Background(), nil, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// sim limits finds the boundary of each search: here the time limit of
// a short run stops the chain, and the report names both sides of it.
func TestSimLimitsSmall(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "sim", "limits", "--duration", "40ms", "--max-chain", "40", "--max-star", "24")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscanf(out[strings.Index(out, "chain  "):], "chain  %d nodes converges", &n); err != nil || n < 3 || n >= 40 {
		t.Fatalf("no chain limit below 40 (%v):\n%s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("; %d nodes does not converge within 40ms", n+1)) || !strings.Contains(out, "star   ") {
		t.Fatalf("report:\n%s", out)
	}
	// A hub that does not converge is not followed by a claim that every
	// hub converges.
	if strings.Contains(out, "children does not converge") && strings.Contains(out, "every hub up to") {
		t.Fatalf("the star report contradicts itself:\n%s", out)
	}
}

func TestSimLimitsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-chain", "2"}, "--max-chain and --max-star must be 3.."},
		{[]string{"--link", "wifi7"}, "wifi7"},
	} {
		_, _, err := execute(t, context.Background(), nil, append([]string{"sim", "limits"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestSimChaosCommand(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "chaos", "--seeds", "3", "--from", "5", "--nodes", "4..10", "--image", "2048..8192", "--max-faults", "6", "--jobs", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"command                   meshfleet sim chaos --seeds 3 --from 5 --nodes 4..10",
		"seeds                     3 (failed 0)", "nodes bricked             0", "invariant violations      0", "seeds per CPU hour", "per wall hour"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimChaosCommandJSONAndReplay(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "chaos", "--seeds", "1", "--from", "3", "--nodes", "6", "--image", "4096", "--faults", "crash@1s:2:5s:0,partition@2s:1:10s:0", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep struct {
		Seeds    int            `json:"seeds"`
		Injected map[string]int `json:"faults_injected"`
		Command  string         `json:"command"`
		Bricked  int            `json:"nodes_bricked"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if rep.Seeds != 1 || rep.Injected["crash"] != 1 || rep.Bricked != 0 ||
		!strings.Contains(rep.Command, "--faults 'crash@1s:2:5s:0,partition@2s:1:10s:0'") {
		t.Errorf("report %+v", rep)
	}
}

func TestSimChaosCommandBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "0..3"}, {"--receivers", "cpp"}, {"--faults", "crash@1s"}, {"--seeds", "0"},
	} {
		_, _, err := execute(t, context.Background(), nil, append([]string{"sim", "chaos"}, args...)...)
		if err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
