package scenario

import (
	"testing"
	"time"
)

// The "must show", on a mesh of 40 devices: the good image reaches
// every node without a relay rebooting with a node on its path; a bad
// image (crash loop, crash on boot) and a leak stop after the canary with
// the canary rolled back and every node reachable; late joiners end
// updated without an operator.
func TestBenchRolloutScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates five rollouts")
	}
	res, err := BenchRollout(RolloutBenchConfig{Nodes: 40, Seed: 1, Loss: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]RolloutBenchResult{}
	for _, r := range res {
		by[r.Scenario] = r
		if r.Unreachable != 0 {
			t.Errorf("%s: %d devices unreachable at the end", r.Scenario, r.Unreachable)
		}
	}
	good := by["good"]
	if good.State != "completed" || good.Confirmed != 40 || good.NestedReboots != 0 || good.CampaignDone != 40 {
		t.Errorf("good: %+v", good)
	}
	if good.CampaignS <= 0 || good.RolloutS <= good.CampaignS {
		t.Errorf("good: rollout %v s vs one campaign %v s: want both measured", good.RolloutS, good.CampaignS)
	}
	for _, s := range []string{"bad", "bad-boot", "leak"} {
		r := by[s]
		if r.State != "failed" || r.Started != r.Canary || r.RanNew != r.Canary || r.RolledBack != r.Canary || r.Confirmed != 0 {
			t.Errorf("%s: want failed, exactly the canary of %d started, ran and rolled back, none left on it: %+v", s, r.Canary, r)
		}
	}
	leak := by["leak"]
	// Visible after a minute of uptime; the soak is two.
	if leak.CaughtWave != 0 || leak.CaughtAfterS < 60 || leak.CaughtAfterS > (2*time.Minute).Seconds() {
		t.Errorf("leak: caught %.0f s after the canary confirmed, in wave %d: want within the canary's soak", leak.CaughtAfterS, leak.CaughtWave)
	}
	late := by["late"]
	if late.State != "completed" || late.Late == 0 || late.LateUpdated != late.Late || late.Confirmed != 40 {
		t.Errorf("late: %+v", late)
	}
}

func TestBenchStragglers(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates three pushes")
	}
	res, err := BenchStragglers(RolloutBenchConfig{Nodes: 40, Seed: 1, Loss: 0.01}, 4)
	if err != nil {
		t.Fatal(err)
	}
	var none, peers *StragglerResult
	for i, r := range res {
		t.Logf("%+v", r)
		if r.Completed != r.Stragglers || r.RootTxBytes == 0 {
			t.Errorf("%+v: want every straggler through, the root's bytes counted", r)
		}
		switch {
		case r.Mode == "broadcast" && r.RelaysReboot && !r.ServeConfirmed && !r.PeerToPeer:
			none = &res[i]
		case r.Mode == "broadcast" && r.PeerToPeer:
			peers = &res[i]
		}
	}
	// Virtual time and counted bytes: deterministic for the seed. Peers
	// offer the image as a straggler connects, so it does not wait for
	// the next announce, and serve it, so the root does not.
	if none == nil || peers == nil {
		t.Fatal("no broadcast run without and with peer-to-peer")
	}
	if peers.RootTxBytes >= none.RootTxBytes/2 || peers.StragglerS >= none.StragglerS {
		t.Errorf("peer-to-peer %+v: want under half the root's bytes and a faster catch-up than without %+v", peers, none)
	}
}
