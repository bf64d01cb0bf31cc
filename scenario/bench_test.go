package scenario

import (
	"os"
	"strconv"
	"testing"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/ota"
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
	res, err := Bench(BenchConfig{Nodes: nodes, Loss: loss, Seed: 1, Image: compress.FirmwareLike(size, 1), Compress: ota.Compress, Decode: ota.Decode, Rows: rows,
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
	if os.Getenv("OTA_BENCH_FAST") != "" {
		return
	}
	// Broadcast sends each chunk over each link about once: within 1.5×
	// of links × transfer bytes (dense text costs 1.23 of it).
	if ratio := float64(b.LinkBytes) / float64(b.Links*b.TransferBytes); ratio > 1.5 {
		t.Errorf("broadcast moved %.2f× links × transfer bytes", ratio)
	}
	su, p := by["stock-unicast/none"], by["pipelined/deflate"]
	if su.Completed != nodes || p.Completed != nodes {
		t.Fatalf("stock unicast %d, pipelined %d of %d", su.Completed, p.Completed, nodes)
	}
	if !(b.VirtualS < p.VirtualS && p.VirtualS < su.VirtualS) {
		t.Errorf("want broadcast < pipelined < stock unicast: %.1f, %.1f, %.1f s", b.VirtualS, p.VirtualS, su.VirtualS)
	}
	if b.VirtualS < b.FloorS {
		t.Errorf("broadcast %.1f s beat the floor %.1f s: the floor is wrong", b.VirtualS, b.FloorS)
	}
	// Stock broadcast with the distributor as root and no root receiver
	// never starts (Q-19 a); stock receivers cannot decompress.
	if sb := by["stock-broadcast/none"]; sb.Completed != 0 || !sb.Capped {
		t.Errorf("stock broadcast completed %d (capped %v)", sb.Completed, sb.Capped)
	}
	if sd := by["stock-broadcast/deflate"]; sd.LinkMsgs != 0 || sd.Note == "" {
		t.Errorf("stock broadcast with deflate ran: %+v", sd)
	}
}
