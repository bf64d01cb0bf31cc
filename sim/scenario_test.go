package sim

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestRunScenario(t *testing.T) {
	rep, err := RunScenario(context.Background(), ScenarioConfig{
		Nodes: 20, Topology: TopologyRandom, Seed: 1, Duration: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ConvergedAtS == nil || *rep.ConvergedAtS <= 0 || *rep.ConvergedAtS > 60 {
		t.Errorf("converged_at_s %v", rep.ConvergedAtS)
	}
	if rep.BroadcastDeliveredOnce != 1 || rep.SingleDelivered != 1 {
		t.Errorf("delivery %v / %v on a lossless mesh, want 1 / 1", rep.BroadcastDeliveredOnce, rep.SingleDelivered)
	}
	if rep.Broadcasts != 20 || rep.Singles != 20 {
		t.Errorf("sent %d broadcasts, %d singles; want 20 each", rep.Broadcasts, rep.Singles)
	}
	if rep.VirtualS != 300 {
		t.Errorf("virtual_s %v, want 300", rep.VirtualS)
	}
	// ESP8266 links have jitter and asymmetric airtime; stock time sync
	// aims for TIME_SYNC_ACCURACY (5 ms) per hop.
	if rep.MaxTimeOffsetUS <= 0 || rep.MaxTimeOffsetUS > 50_000 {
		t.Errorf("max_time_offset_us %d", rep.MaxTimeOffsetUS)
	}
	if rep.LinkMessages == 0 || rep.LinkBytes <= rep.LinkMessages || rep.Link != "esp8266" {
		t.Errorf("report %+v", rep)
	}

	again, err := RunScenario(context.Background(), ScenarioConfig{
		Nodes: 20, Topology: TopologyRandom, Seed: 1, Duration: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Wall time and heap describe this process, not the simulated mesh.
	again.WallS, again.HeapPerNodeBytes = rep.WallS, rep.HeapPerNodeBytes
	if *again.ConvergedAtS != *rep.ConvergedAtS {
		t.Errorf("same seed converged at %v and %v", *rep.ConvergedAtS, *again.ConvergedAtS)
	}
	again.ConvergedAtS = rep.ConvergedAtS
	if again != rep {
		t.Errorf("same seed, different reports:\n%+v\n%+v", rep, again)
	}
}

func TestRunScenarioLoss(t *testing.T) {
	rep, err := RunScenario(context.Background(), ScenarioConfig{
		Nodes: 20, Topology: TopologyChain, Seed: 2, Duration: 10 * time.Minute, Loss: 0.05,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each message crosses several hops, each dropping 5%.
	if rep.BroadcastDeliveredOnce >= 1 || rep.BroadcastDeliveredOnce < 0.3 {
		t.Errorf("broadcast_delivered_once %v with 5%% loss per hop", rep.BroadcastDeliveredOnce)
	}
	if rep.Lost == 0 {
		t.Error("no message lost")
	}
}

func TestRunScenarioNotConverged(t *testing.T) {
	rep, err := RunScenario(context.Background(), ScenarioConfig{
		Nodes: 50, Topology: TopologyChain, Seed: 3, Duration: 5 * time.Millisecond,
	})
	if !errors.Is(err, ErrNotConverged) {
		t.Fatalf("err %v, want ErrNotConverged", err)
	}
	if rep.ConvergedAtS != nil || rep.VirtualS != 0.005 || rep.Nodes != 50 {
		t.Errorf("partial report %+v", rep)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"converged_at_s", "broadcast_delivered_once", "single_delivered",
		"max_time_offset_us", "virtual_s", "wall_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report lacks %q: %s", k, b)
		}
	}
	if m["converged_at_s"] != nil {
		t.Errorf("converged_at_s = %v, want null", m["converged_at_s"])
	}
}

func TestRunScenarioCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunScenario(ctx, ScenarioConfig{Nodes: 10, Duration: time.Hour}); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestRunScenarioBadConfig(t *testing.T) {
	for _, c := range []ScenarioConfig{
		{Nodes: 1},
		{Nodes: MaxScenarioNodes + 1},
		{Nodes: 10, Topology: "ring"},
		{Nodes: 10, Duration: -time.Second},
		{Nodes: 10, Loss: 2},
		{Nodes: 10, Loss: -0.5},
		{Nodes: 10, Broadcasts: -1},
	} {
		if _, err := RunScenario(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
