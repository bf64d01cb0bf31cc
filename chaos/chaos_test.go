package chaos

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
)

// ciConfig is the campaign the tests run: small meshes and images, every
// mode, so that 50 seeds take well under a minute on two cores.
func ciConfig() Config {
	return Config{Seeds: 50, From: 1, MinNodes: 8, MaxNodes: 40, MinImage: 4 << 10, MaxImage: 24 << 10,
		Modes: []ota.Mode{ota.ModePipelined, ota.ModeBroadcast, ota.ModeStock}, MaxFaults: 10, Shrink: true}
}

// TestCampaignCI is the CI-sized fault campaign: 50 seeds, and not one
// broken invariant. A failure prints the seed's replay command and its
// shrunk schedule.
func TestCampaignCI(t *testing.T) {
	if testing.Short() {
		t.Skip("50 simulated campaigns")
	}
	cfg := ciConfig()
	sum := RunSeeds(context.Background(), cfg, func(r Result) {
		if !r.Failed() {
			return
		}
		for _, v := range r.Violations {
			t.Errorf("seed %d: %s", r.Plan.Seed, v)
		}
		t.Errorf("seed %d replay: %s", r.Plan.Seed, cfg.Replay(r.Plan.Seed, nil).Command("meshfleet sim chaos"))
		if r.Shrunk != nil {
			t.Errorf("seed %d shrunk: %s", r.Plan.Seed, cfg.Replay(r.Plan.Seed, r.Shrunk).Command("meshfleet sim chaos"))
		}
	})
	if sum.Seeds != 50 || sum.Bricked != 0 || sum.Violations != 0 {
		t.Errorf("%d seeds, %d bricked, %d violations", sum.Seeds, sum.Bricked, sum.Violations)
	}
	// The campaign is worth something only if the faults fire.
	for _, k := range []Kind{Crash, PowerCut, LinkDrop, Partition, Loss, Gateway, Newer, QueueOverflow, ClockJump} {
		if sum.Injected[k] == 0 {
			t.Errorf("no %s fault fired in 50 seeds (injected: %v)", k, sum.Injected)
		}
	}
	if sum.Reachable == 0 || sum.CompletionRate < 0.99 {
		t.Errorf("completion after heal %d/%d", sum.Completed, sum.Reachable)
	}
	for _, m := range cfg.Modes {
		if sum.Modes[m] == 0 {
			t.Errorf("mode %s never drawn: %v", m, sum.Modes)
		}
	}
	t.Logf("%d faults %v, completion %d/%d, %.0f simulated node-hours", sum.Faults, sum.Injected, sum.Completed, sum.Reachable, sum.NodeHours)
}

// corruptStateOnPowerCut is a planted defect: a power cut at a storage
// operation leaves the slot store's record unreadable, as a store that
// wrote its state in place would.
func corruptStateOnPowerCut(mem *slot.Memory, cut Kind) {
	if cut != PowerCut {
		return
	}
	f, err := mem.Create("state.json")
	if err != nil {
		return
	}
	_, _ = f.WriteAt([]byte("{\"active\":"), 0)
	_ = f.Sync()
	_ = f.Close()
	_ = mem.Sync()
}

// TestPlantedDefectIsFoundShrunkAndReplayed plants a defect, finds a seed
// whose schedule trips over it among other faults, and checks that the
// schedule shrinks to the one fault that matters and that the printed
// replay command, parsed as the command line parses it, fails the same
// way.
func TestPlantedDefectIsFoundShrunkAndReplayed(t *testing.T) {
	cfg := ciConfig()
	cfg.MaxFaults = 8
	cfg.bug = corruptStateOnPowerCut
	var failed *Result
	for seed := uint64(1); seed <= 200 && failed == nil; seed++ {
		p := NewPlan(cfg, seed)
		cuts := 0
		for _, f := range p.Faults {
			if f.Kind == PowerCut {
				cuts++
			}
		}
		if len(p.Faults) < 4 || cuts == 0 {
			continue
		}
		if r := Run(cfg, seed); r.Failed() && r.Violations[0].Invariant == "bricked" {
			failed = &r
		}
	}
	if failed == nil {
		t.Fatal("no seed of 200 found the planted defect")
	}
	shrunk, runs := Shrink(cfg, *failed)
	if len(shrunk) == 0 || len(shrunk) > 2 || len(shrunk) >= len(failed.Plan.Faults) {
		t.Fatalf("seed %d: %d faults shrunk to %v in %d runs", failed.Plan.Seed, len(failed.Plan.Faults), shrunk, runs)
	}
	if !hasKind(shrunk, PowerCut) {
		t.Fatalf("shrunk schedule %v lost the power cut", shrunk)
	}
	cmd := cfg.Replay(failed.Plan.Seed, shrunk).Command("meshfleet sim chaos")
	replay := parseCommand(t, cmd)
	replay.bug = corruptStateOnPowerCut
	r := Run(replay, replay.From)
	if !r.Failed() || r.Violations[0].Invariant != "bricked" {
		t.Fatalf("%s: replay gave %v", cmd, r.Violations)
	}
	again := Run(replay, replay.From)
	if again.Digest != r.Digest {
		t.Fatalf("the replay is not deterministic: %s then %s", r.Digest, again.Digest)
	}
	t.Logf("seed %d: %d faults shrunk to %s in %d runs; %s", failed.Plan.Seed, len(failed.Plan.Faults), FormatFaults(shrunk), runs, cmd)
}

func hasKind(fs []Fault, k Kind) bool {
	for _, f := range fs {
		if f.Kind == k {
			return true
		}
	}
	return false
}

// parseCommand reads a printed command line back as `meshfleet sim chaos`
// does.
func parseCommand(t *testing.T, cmd string) Config {
	t.Helper()
	words := splitWords(cmd)[3:] // meshfleet sim chaos
	var cfg Config
	fs := pflag.NewFlagSet("chaos", pflag.ContinueOnError)
	flags := cfg.Flags(fs)
	if err := fs.Parse(words); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if err := flags.Finish(fs); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return cfg
}

// TestSameSeedSameRun: a seed and the code give the same run, to the
// digest of every machine input; another seed gives another run.
func TestSameSeedSameRun(t *testing.T) {
	cfg := ciConfig()
	a, b := Run(cfg, 7), Run(cfg, 7)
	if a.Digest == "" || a.Digest != b.Digest {
		t.Fatalf("seed 7 twice: %q and %q", a.Digest, b.Digest)
	}
	if len(a.Plan.Faults) == 0 || len(a.Injected) == 0 {
		t.Fatalf("seed 7 ran no fault: %v", a.Plan.Faults)
	}
	if c := Run(cfg, 8); c.Digest == a.Digest {
		t.Fatalf("seeds 7 and 8 give the same digest %s", a.Digest)
	}
	// The same schedule given explicitly is the same run.
	explicit := Run(cfg.Replay(7, a.Plan.Faults), 7)
	if explicit.Digest != a.Digest {
		t.Fatalf("seed 7 with its own schedule given: %s, drawn: %s", explicit.Digest, a.Digest)
	}
}

func TestParseFaults(t *testing.T) {
	in := []Fault{{Kind: Crash, At: 41200 * time.Millisecond, Node: 12, For: 20 * time.Second}, {Kind: Loss, At: 0, Node: 3, For: time.Minute, Arg: 40},
		{Kind: ClockJump, At: 10 * time.Second, Node: 3, For: 2 * time.Minute, Arg: jumpMeshBack}}
	out, err := ParseFaults(FormatFaults(in))
	if err != nil || !slices.Equal(out, in) {
		t.Fatalf("round trip of %v: %v, %v", in, out, err)
	}
	if fs, err := ParseFaults(" "); err != nil || fs == nil || len(fs) != 0 {
		t.Fatalf("empty schedule: %v, %v", fs, err)
	}
	for _, bad := range []string{"crash", "boom@1s:0:1s:0", "crash@-1s:0:1s:0", "crash@1s:x:1s:0", "crash@1s:0:2h:0", "crash@1s:0:1s", "crash@99h:0:1s:0", "clock-jump@1s:0:1m:4"} {
		if _, err := ParseFaults(bad); err == nil || !strings.Contains(err.Error(), "chaos: fault") {
			t.Errorf("%q: %v, want an error naming the fault", bad, err)
		}
	}
}

func TestFlagsRejectBadInput(t *testing.T) {
	for _, args := range [][]string{{"--nodes", "0"}, {"--nodes", "9..3"}, {"--nodes", "a..b"}, {"--modes", "fast"}, {"--modes", "stock-turbo"}, {"--seeds", "0"}, {"--faults", "x"}, {"--image", "10"}} {
		var cfg Config
		fs := pflag.NewFlagSet("chaos", pflag.ContinueOnError)
		flags := cfg.Flags(fs)
		if err := fs.Parse(args); err != nil {
			continue
		}
		if err := flags.Finish(fs); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// splitWords splits a command line as a POSIX shell does for what
// Config.Command prints: words between spaces, 'single quotes' kept whole.
func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, c := range s {
		switch {
		case c == '\'':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// Every target of a clock jump, in every mode: the root's clock ten
// minutes ahead mid-transfer, devices' clocks past their timers, mesh
// times either way; every jump fires and every invariant holds.
func TestClockJumps(t *testing.T) {
	faults, err := ParseFaults("clock-jump@1s:0:10m:3,clock-jump@1.1s:2:4m:0,clock-jump@1.2s:3:30s:0,clock-jump@1.3s:4:5m:1," +
		"clock-jump@1.4s:5:5m:2,clock-jump@20s:6:10m:0,clock-jump@30s:0:90s:3")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ota.Mode{ota.ModeBroadcast, ota.ModePipelined, ota.ModeStock} {
		cfg := Config{MinNodes: 12, MaxNodes: 12, Modes: []ota.Mode{mode}}.Replay(3, faults)
		res := Run(cfg, 3)
		for _, v := range res.Violations {
			t.Errorf("%s: %s", mode, v)
		}
		if res.Injected[ClockJump] != len(faults) {
			t.Errorf("%s: %d of %d clock jumps fired", mode, res.Injected[ClockJump], len(faults))
		}
		if res.Reachable != 12 || res.Completed != 12 {
			t.Errorf("%s: completed %d of %d reachable, want 12", mode, res.Completed, res.Reachable)
		}
	}
}
