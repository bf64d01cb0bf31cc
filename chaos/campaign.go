package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
)

// Config configures a fault campaign.
type Config struct {
	Seeds int    // how many seeds
	From  uint64 // the first seed
	// MinNodes and MaxNodes bound the devices of each seed's mesh (the
	// root is one more).
	MinNodes, MaxNodes int
	// MinImage and MaxImage bound the image size in bytes.
	MinImage, MaxImage int
	Modes              []ota.Mode
	// Receivers are what the devices of stock campaigns run, drawn per
	// seed (the fast modes run ours, stock-turbo the stock receiver).
	Receivers []Receiver
	MaxFaults int // faults per seed, drawn in 1..MaxFaults
	// Faults, if not nil, is every seed's schedule instead of a drawn one.
	Faults []Fault
	Jobs   int  // seeds run at once (0: GOMAXPROCS)
	Shrink bool // shrink the schedule of every failing seed
	// ShrinkRuns bounds the runs one shrink may take.
	ShrinkRuns int

	// bug, set by tests only, runs at every power-off with the device's
	// storage and the fault that cut it ("" for any other power-off): a
	// planted defect the invariants must find.
	bug func(mem *slot.Memory, cut Kind)
}

// Defaults of Config.
const (
	DefaultMinNodes  = 50
	DefaultMaxNodes  = 200
	DefaultMinImage  = 8 << 10
	DefaultMaxImage  = 48 << 10
	DefaultMaxFaults = 12
)

func (c *Config) defaults() {
	if c.MinNodes <= 0 {
		c.MinNodes = DefaultMinNodes
	}
	if c.MaxNodes < c.MinNodes {
		c.MaxNodes = max(c.MinNodes, DefaultMaxNodes)
	}
	if c.MinImage <= 0 {
		c.MinImage = DefaultMinImage
	}
	if c.MaxImage < c.MinImage {
		c.MaxImage = max(c.MinImage, DefaultMaxImage)
	}
	if len(c.Modes) == 0 {
		c.Modes = DefaultModes
	}
	if len(c.Receivers) == 0 {
		c.Receivers = DefaultReceivers
	}
	if c.MaxFaults <= 0 {
		c.MaxFaults = DefaultMaxFaults
	}
	if c.Jobs <= 0 {
		c.Jobs = runtime.GOMAXPROCS(0)
	}
	if c.ShrinkRuns <= 0 {
		c.ShrinkRuns = 200
	}
}

// Summary is a campaign's figures.
type Summary struct {
	Seeds      int          `json:"seeds"`
	Failed     int          `json:"failed_seeds"`
	Injected   map[Kind]int `json:"faults_injected"`
	Faults     int          `json:"faults_total"`
	Bricked    int          `json:"nodes_bricked"`
	Violations int          `json:"invariant_violations"`
	Reachable  int          `json:"reachable_after_heal"`
	Completed  int          `json:"completed_after_heal"`
	// StockStuck are stock receivers left on their previous image by
	// the C++ receiver's own behaviour (counted, not violations).
	StockStuck int `json:"stock_receivers_stuck"`
	// StockUnseen are stock receivers on the target the distributor
	// has no record of.
	StockUnseen int `json:"stock_receivers_unseen"`
	// CompletionRate is Completed / Reachable.
	CompletionRate    float64          `json:"completion_rate_after_heal"`
	NodeHours         float64          `json:"simulated_node_hours"`
	WallS             float64          `json:"wall_s"`
	CPUS              float64          `json:"cpu_s"`
	SeedsPerCPUH      float64          `json:"seeds_per_cpu_hour"`
	NodeHoursPerWallH float64          `json:"simulated_node_hours_per_wall_hour"`
	Modes             map[ota.Mode]int `json:"modes"`
	// Receivers counts the seeds by mode and receiver ("stock/ours").
	Receivers map[string]int `json:"receivers"`
	Results   []Result       `json:"results,omitempty"`
}

// RunSeeds runs cfg.Seeds seeds from cfg.From on cfg.Jobs goroutines,
// each seed on its own simulated network. report, if set, sees every
// result in seed order as soon as it and those before it are done. Once
// ctx ends no seed starts; the summary covers the seeds that ran.
func RunSeeds(ctx context.Context, cfg Config, report func(Result)) Summary {
	cfg.defaults()
	results := make([]Result, cfg.Seeds)
	done := make([]bool, cfg.Seeds)
	var mu sync.Mutex
	next, reported := 0, 0
	var wg sync.WaitGroup
	for range min(cfg.Jobs, max(cfg.Seeds, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= cfg.Seeds || ctx.Err() != nil {
					return
				}
				res := Run(cfg, cfg.From+uint64(i))
				if res.Failed() && cfg.Shrink {
					res.Shrunk, res.ShrinkRuns = Shrink(cfg, res)
				}
				mu.Lock()
				results[i], done[i] = res, true
				for reported < cfg.Seeds && done[reported] {
					if report != nil {
						report(results[reported])
					}
					reported++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var ran []Result
	for i, r := range results {
		if done[i] {
			ran = append(ran, r)
		}
	}
	return Summarise(ran)
}

// Summarise adds results up (wall and CPU time are the caller's).
func Summarise(results []Result) Summary {
	s := Summary{Seeds: len(results), Injected: map[Kind]int{}, Modes: map[ota.Mode]int{}, Receivers: map[string]int{}, Results: results}
	for _, r := range results {
		if r.Failed() {
			s.Failed++
		}
		for k, n := range r.Injected {
			s.Injected[k] += n
			s.Faults += n
		}
		s.Bricked += r.Bricked
		s.Violations += len(r.Violations)
		s.Reachable += r.Reachable
		s.Completed += r.Completed
		s.NodeHours += r.NodeHours
		s.Modes[r.Plan.Mode]++
		s.Receivers[string(r.Plan.Mode)+"/"+string(r.Plan.Receiver)]++
		s.StockStuck += r.StockStuck
		s.StockUnseen += r.StockUnseen
	}
	if s.Reachable > 0 {
		s.CompletionRate = float64(s.Completed) / float64(s.Reachable)
	}
	return s
}

// SetTimes fills the rates from the campaign's wall and CPU time.
func (s *Summary) SetTimes(wall, cpu time.Duration) {
	s.WallS, s.CPUS = wall.Seconds(), cpu.Seconds()
	if cpu > 0 {
		s.SeedsPerCPUH = float64(s.Seeds) / cpu.Hours()
	}
	if wall > 0 {
		s.NodeHoursPerWallH = s.NodeHours / wall.Hours()
	}
}

// Print writes the figures.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "seeds                     %d (failed %d)\n", s.Seeds, s.Failed)
	modes := make([]string, 0, len(s.Modes))
	for m, n := range s.Modes {
		modes = append(modes, fmt.Sprintf("%s %d", m, n))
	}
	sort.Strings(modes)
	fmt.Fprintf(w, "modes                     %s\n", strings.Join(modes, ", "))
	receivers := make([]string, 0, len(s.Receivers))
	for m, n := range s.Receivers {
		receivers = append(receivers, fmt.Sprintf("%s %d", m, n))
	}
	sort.Strings(receivers)
	fmt.Fprintf(w, "mode/receiver             %s\n", strings.Join(receivers, ", "))
	fmt.Fprintf(w, "faults injected           %d\n", s.Faults)
	for _, k := range Kinds {
		if n := s.Injected[k]; n > 0 {
			fmt.Fprintf(w, "  %-23s %d\n", k, n)
		}
	}
	fmt.Fprintf(w, "nodes bricked             %d\n", s.Bricked)
	fmt.Fprintf(w, "invariant violations      %d\n", s.Violations)
	fmt.Fprintf(w, "completion after heal     %d/%d (%.2f%%)\n", s.Completed, s.Reachable, 100*s.CompletionRate)
	fmt.Fprintf(w, "stock receivers stuck     %d (on their previous image, the C++ receiver's own behaviour)\n", s.StockStuck)
	fmt.Fprintf(w, "stock receivers unseen    %d (on the target, the distributor has no record of them)\n", s.StockUnseen)
	fmt.Fprintf(w, "wall / CPU                %.1f s / %.1f s\n", s.WallS, s.CPUS)
	fmt.Fprintf(w, "seeds per CPU hour        %.0f\n", s.SeedsPerCPUH)
	fmt.Fprintf(w, "simulated node-hours      %.1f (%.0f per wall hour)\n", s.NodeHours, s.NodeHoursPerWallH)
}

// Command is the command line that runs cfg again (prog is the program
// and subcommand, e.g. "meshfleet sim chaos").
func (c Config) Command(prog string) string {
	c.defaults()
	modes := make([]string, len(c.Modes))
	for i, m := range c.Modes {
		modes[i] = string(m)
	}
	receivers := make([]string, len(c.Receivers))
	for i, r := range c.Receivers {
		receivers[i] = string(r)
	}
	s := fmt.Sprintf("%s --seeds %d --from %d --nodes %d..%d --image %d..%d --modes %s --receivers %s --max-faults %d",
		prog, c.Seeds, c.From, c.MinNodes, c.MaxNodes, c.MinImage, c.MaxImage, strings.Join(modes, ","), strings.Join(receivers, ","), c.MaxFaults)
	if c.Faults != nil {
		s += fmt.Sprintf(" --faults '%s'", FormatFaults(c.Faults))
	}
	return s
}

// Replay is the configuration that runs seed alone, with faults when not
// nil.
func (c Config) Replay(seed uint64, faults []Fault) Config {
	c.Seeds, c.From, c.Faults, c.Jobs = 1, seed, faults, 0
	return c
}

// Flags registers cfg's flags on fs; call Finish after fs.Parse.
func (c *Config) Flags(fs *pflag.FlagSet) *Flags {
	f := &Flags{cfg: c}
	fs.IntVar(&c.Seeds, "seeds", 20, "seeds to run")
	fs.Uint64Var(&c.From, "from", 1, "first seed")
	fs.StringVar(&f.nodes, "nodes", fmt.Sprintf("%d..%d", DefaultMinNodes, DefaultMaxNodes), "devices per mesh: N or MIN..MAX")
	fs.StringVar(&f.image, "image", fmt.Sprintf("%d..%d", DefaultMinImage, DefaultMaxImage), "image bytes: N or MIN..MAX")
	fs.StringVar(&f.modes, "modes", modeList(DefaultModes), "modes to draw from (pipelined, broadcast, stock, stock-turbo)")
	fs.StringVar(&f.receivers, "receivers", "ours,stock", "receivers stock campaigns draw from: ours, stock (the C++ receiver's model); stock-turbo runs stock, the fast modes ours")
	fs.IntVar(&c.MaxFaults, "max-faults", DefaultMaxFaults, "faults per seed, drawn in 1..N")
	fs.StringVar(&f.faults, "faults", "", "run this fault schedule (kind@at:node:for:arg,...) instead of a drawn one")
	fs.IntVar(&c.Jobs, "jobs", 0, "seeds run at once (0: GOMAXPROCS)")
	fs.BoolVar(&c.Shrink, "shrink", true, "shrink the fault schedule of every failing seed")
	return f
}

// Flags holds the flags Config.Flags registered.
type Flags struct {
	cfg                                    *Config
	nodes, image, modes, receivers, faults string
}

// Finish checks and applies the parsed flags.
func (f *Flags) Finish(fs *pflag.FlagSet) error {
	c := f.cfg
	var err error
	if c.MinNodes, c.MaxNodes, err = parseRange(f.nodes, 1, 1000); err != nil {
		return fmt.Errorf("--nodes: %w", err)
	}
	if c.MinImage, c.MaxImage, err = parseRange(f.image, 256, 4<<20); err != nil {
		return fmt.Errorf("--image: %w", err)
	}
	c.Modes = nil
	for _, m := range strings.Split(f.modes, ",") {
		mode, err := ota.ParseMode(strings.TrimSpace(m))
		if err != nil {
			return fmt.Errorf("--modes: %w", err)
		}
		c.Modes = append(c.Modes, mode)
	}
	c.Receivers = nil
	for _, s := range strings.Split(f.receivers, ",") {
		rc, err := ParseReceiver(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--receivers: %w", err)
		}
		c.Receivers = append(c.Receivers, rc)
	}
	c.Faults = nil
	if fs.Changed("faults") {
		if c.Faults, err = ParseFaults(f.faults); err != nil {
			return fmt.Errorf("--faults: %w", err)
		}
	}
	if c.Seeds < 1 || c.Seeds > 1_000_000 {
		return errors.New("--seeds: want 1..1000000")
	}
	if c.MaxFaults < 1 || c.MaxFaults > 200 {
		return errors.New("--max-faults: want 1..200")
	}
	if c.Jobs < 0 || c.Jobs > 256 {
		return errors.New("--jobs: want 0..256")
	}
	return nil
}

func modeList(ms []ota.Mode) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
}

func parseRange(s string, lo, hi int) (int, int, error) {
	a, b, isRange := strings.Cut(s, "..")
	x, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, fmt.Errorf("%q: want N or MIN..MAX", s)
	}
	y := x
	if isRange {
		if y, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("%q: want N or MIN..MAX", s)
		}
	}
	if x < lo || y > hi || x > y {
		return 0, 0, fmt.Errorf("%q: want %d ≤ MIN ≤ MAX ≤ %d", s, lo, hi)
	}
	return x, y, nil
}
