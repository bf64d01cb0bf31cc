package main

import (
	"context"
	"testing"
	"time"
)

// A small version of meshfleet bench history: 50 nodes for 10 simulated
// minutes (the whole day of 1,000 nodes is the command's, not a test's).
func TestBenchHistorySmall(t *testing.T) {
	res, err := runHistoryBench(context.Background(), historyBenchConfig{Nodes: 50, Duration: 10 * time.Minute, Interval: time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Samples != 50*600 || res.Dropped != 0 || res.RawRows != 50*10 || res.RollupRows != 50*10 {
		t.Fatalf("rows: %+v", res)
	}
	if res.DBBytes <= 0 || res.DecodeNS <= 0 || res.IngestWallNS <= 0 || res.IngestCPUNS <= 0 {
		t.Fatalf("figures: %+v", res)
	}
	if res.QueryPoints != 10 || res.RawQueryPoints != 60 {
		t.Fatalf("query points: %+v", res)
	}
	t.Logf("%+v", res)
}
