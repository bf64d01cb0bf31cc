package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestSimStatusJSON(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "--nodes", "40", "--seed", "2", "--duration", "3m", "--status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	num := func(k string) float64 {
		t.Helper()
		v, ok := rep[k].(float64)
		if !ok {
			t.Fatalf("report lacks number %q: %s", k, out)
		}
		return v
	}
	if v := num("visibility"); v != 1 {
		t.Errorf("visibility %v", v)
	}
	if v := num("freshness_p99_s"); v <= 0 || v > 2 {
		t.Errorf("freshness_p99_s %v", v)
	}
	if v := num("alert_detection_s"); v <= 0 || v > 5 {
		t.Errorf("alert_detection_s %v", v)
	}
	if v := num("status_overhead_fraction"); v <= 0 || v >= 1 {
		t.Errorf("status_overhead_fraction %v", v)
	}
	if v := num("status_overhead_busiest_radio"); v <= 0 || v > 0.01 {
		t.Errorf("status_overhead_busiest_radio %v", v)
	}
	if num("nodes") != 40 || num("virtual_s") != 180 || num("interval_s") != 1 || num("max_interval_s") != 30 ||
		num("wall_s") <= 0 || rep["link"] != "esp8266" || rep["aggregate"] != true {
		t.Errorf("report %s", out)
	}
	// Not the plain sim report.
	if _, ok := rep["broadcast_delivered_once"]; ok {
		t.Errorf("status report carries the message scenario's keys: %s", out)
	}
}

func TestSimStatusTable(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "--nodes", "20", "--duration", "3m", "--status", "--status-interval", "2s", "--link", "esp32", "--status-aggregate", "off")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20 nodes, random, esp32 link, seed 1, telemetry every 2 s", "visibility", "1.0000",
		"freshness", "p99", "data age p99", "alert detection", "node offline", "low memory", "status overhead", "of the mesh's link capacity", "busiest radio", "0 mismatches"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimStatusBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--status", "--broadcasts", "3"},
		{"sim", "--status", "--singles", "3"},
		{"sim", "--status-interval", "5s"},
		{"sim", "--status", "--status-interval", "1500ms"},
		{"sim", "--status", "--nodes", "1"},
		{"sim", "--status", "--status-aggregate", "maybe"},
		{"sim", "--status-aggregate", "on"},
		{"sim", "--status", "--status-aggregate", "off", "--status-max-interval", "20s"},
		{"sim", "--status", "--status-max-interval", "1500ms"},
	} {
		if _, _, err := execute(t, context.Background(), nil, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// --status-aggregate both: the two runs on one mesh and the ratio of the
// root's radio, in one process.
func TestSimStatusBoth(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil,
		"sim", "--nodes", "30", "--seed", "4", "--duration", "3m", "--status", "--status-aggregate", "both", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cmp struct {
		Off, On struct {
			Aggregate bool    `json:"aggregate"`
			Busiest   float64 `json:"status_overhead_busiest_radio"`
			Seed      uint64  `json:"seed"`
		}
		Ratio float64 `json:"busiest_radio_ratio"`
	}
	if err := json.Unmarshal([]byte(out), &cmp); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if cmp.Off.Aggregate || !cmp.On.Aggregate || cmp.Off.Seed != 4 || cmp.On.Seed != 4 {
		t.Fatalf("runs %+v", cmp)
	}
	if cmp.Off.Busiest <= 0 || cmp.Ratio <= 0 || cmp.Ratio >= 1 || cmp.Ratio != cmp.On.Busiest/cmp.Off.Busiest {
		t.Errorf("busiest radio %v off, %v on, ratio %v", cmp.Off.Busiest, cmp.On.Busiest, cmp.Ratio)
	}
	table, _, err := execute(t, context.Background(), nil,
		"sim", "--nodes", "30", "--seed", "4", "--duration", "3m", "--status", "--status-aggregate", "both")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--- status-aggregate off", "--- status-aggregate on", "bundled at relays", "busiest radio with aggregation"} {
		if !strings.Contains(table, want) {
			t.Errorf("output lacks %q:\n%s", want, table)
		}
	}
}
