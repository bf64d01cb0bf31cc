package ota

import (
	"os"
	"strconv"
	"testing"
)

// TestBenchShape runs a small bench and checks the relations the design
// promises: broadcast moves each byte over each link about once, stock
// unicast once per receiver below each link.
func TestBenchShape(t *testing.T) {
	nodes, size := 14, 60_000
	if v, _ := strconv.Atoi(os.Getenv("OTA_BENCH_NODES")); v > 0 {
		nodes = v
	}
	if v, _ := strconv.Atoi(os.Getenv("OTA_BENCH_SIZE")); v > 0 {
		size = v
	}
	loss, _ := strconv.ParseFloat(os.Getenv("OTA_BENCH_LOSS"), 64)
	rows := DefaultBenchRows
	if os.Getenv("OTA_BENCH_FAST") != "" {
		rows = []BenchRow{{"pipelined", "deflate"}, {"broadcast", "deflate"}}
	}
	res, err := Bench(BenchConfig{Nodes: nodes, Loss: loss, Seed: 1, Image: testImage(size, 1), Compress: testCompress, Decode: testDecode, Rows: rows,
		Report: func(r BenchResult) { t.Logf("%+v", r) }})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]BenchResult{}
	for _, r := range res {
		by[r.Mode+"/"+r.Compress] = r
	}
	b := by["broadcast/deflate"]
	if b.Completed != nodes {
		t.Fatalf("broadcast completed %d of %d", b.Completed, nodes)
	}
}
