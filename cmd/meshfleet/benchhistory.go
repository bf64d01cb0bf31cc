package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/history"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

func newBenchHistoryCmd() *cobra.Command {
	var (
		cfg    historyBenchConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "history [--nodes N] [--duration 24h] [--dir DIR] [--json]",
		Short: "Record N simulated nodes at 1 Hz for a simulated day into the history database",
		Long: `Feeds the history store (package history, as the gateway runs it: a
buffered queue, batched transactions, 1-minute rollups, retention) with the
status samples of --nodes nodes reporting every --interval for --duration of
simulated time, as fast as the store takes them; the clock is the simulated
one, so a day takes minutes. It reports the rows written, the database size
on disk, the ingest cost per sample (wall and CPU time) as a ratio to
decoding the same telemetry package (JSON, base64, frame delta) with the
collector's decoder in this process, and the time to query one node's day
at 1-minute steps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Nodes < 1 || cfg.Duration < time.Minute || cfg.Interval < time.Second {
				return fmt.Errorf("--nodes must be positive, --duration at least 1m, --interval at least 1s")
			}
			res, err := runHistoryBench(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "nodes\t%d at one sample per %s, %s simulated\n", res.Nodes, res.Interval, res.Simulated)
			fmt.Fprintf(tw, "samples\t%d written, %d dropped\n", res.Samples, res.Dropped)
			fmt.Fprintf(tw, "rows\t%d raw (a node's minute each), %d 1-minute rollups\n", res.RawRows, res.RollupRows)
			fmt.Fprintf(tw, "database\t%.1f MB on disk (%.1f bytes a sample)\n", float64(res.DBBytes)/1e6, float64(res.DBBytes)/float64(max(res.Samples, 1)))
			fmt.Fprintf(tw, "ingest\t%.0f ns a sample wall, %.0f ns CPU (%.0f samples/s; %s wall)\n", res.IngestWallNS, res.IngestCPUNS, 1e9/res.IngestWallNS, time.Duration(res.WallS*float64(time.Second)).Round(time.Second))
			fmt.Fprintf(tw, "decode\t%.0f ns a telemetry package wall, %.0f ns CPU (%d-byte JSON; wall %.0f ns before the ingest, %.0f after)\n", res.DecodeNS, res.DecodeCPUNS, res.PackageBytes, res.DecodeBeforeNS, res.DecodeAfterNS)
			fmt.Fprintf(tw, "ratio\tingest/decode %.2f (wall), %.2f (CPU)\n", res.IngestWallNS/res.DecodeNS, res.IngestCPUNS/res.DecodeCPUNS)
			fmt.Fprintf(tw, "query\tone node's day at 1-minute steps: %d points in %.2f ms (median of %d)\n", res.QueryPoints, res.QueryMS, res.QueryRuns)
			fmt.Fprintf(tw, "query raw\tone node's last hour at 10 s steps: %d points in %.2f ms\n", res.RawQueryPoints, res.RawQueryMS)
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 1000, "simulated nodes")
	f.DurationVar(&cfg.Duration, "duration", 24*time.Hour, "simulated time to record")
	f.DurationVar(&cfg.Interval, "interval", time.Second, "each node's report interval")
	f.StringVar(&cfg.Dir, "dir", "", "directory for history.db (default: a temporary one, removed afterwards)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

type historyBenchConfig struct {
	Nodes    int
	Duration time.Duration
	Interval time.Duration
	Dir      string
}

type historyBenchResult struct {
	Nodes          int     `json:"nodes"`
	Interval       string  `json:"interval"`
	Simulated      string  `json:"simulated"`
	Samples        uint64  `json:"samples_written"`
	Dropped        uint64  `json:"samples_dropped"`
	RawRows        int64   `json:"raw_rows"`
	RollupRows     int64   `json:"rollup_rows"`
	DBBytes        int64   `json:"db_bytes"`
	WallS          float64 `json:"wall_s"`
	IngestWallNS   float64 `json:"ingest_wall_ns_per_sample"`
	IngestCPUNS    float64 `json:"ingest_cpu_ns_per_sample"`
	DecodeNS       float64 `json:"decode_ns_per_sample"`
	DecodeCPUNS    float64 `json:"decode_cpu_ns_per_sample"`
	DecodeBeforeNS float64 `json:"decode_before_ns"`
	DecodeAfterNS  float64 `json:"decode_after_ns"`
	PackageBytes   int     `json:"package_bytes"`
	QueryPoints    int     `json:"query_points"`
	QueryMS        float64 `json:"query_ms"`
	QueryRuns      int     `json:"query_runs"`
	RawQueryPoints int     `json:"raw_query_points"`
	RawQueryMS     float64 `json:"raw_query_ms"`
}

// benchEpoch is the simulated day's start.
var benchEpoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// benchValues are node i's telemetry at simulated second s: free memory
// drifting and swinging, counters rising, a restart a day for one node in
// ten, so every column changes as a real fleet's do.
func benchValues(i int, s int64) telemetry.Values {
	up := s + int64(i)*37
	if i%10 == 0 && s >= 43200 {
		up = s - 43200 // restarted at noon
	}
	return telemetry.Values{
		Uptime:          uint32(up),
		FreeMemory:      uint32(40000 + 3000*math.Sin(float64(s+int64(i))/600) - float64(s%86400)/20),
		MessagesRx:      uint32(s * 3),
		MessagesTx:      uint32(s * 2),
		MessagesDropped: uint32(s / 500),
		Latency:         uint32(2000 + (i%7)*300 + int(s%13)*50),
		LossPermille:    uint16(s % 20),
		Interval:        1,
		Connections:     uint8(1 + i%4),
		RSSI:            int8(-50 - i%30),
		WiFi:            uint8(100 - i%30),
		Nodes:           1000,
	}
}

// benchSample is what the gateway records of node i's telemetry v.
func benchSample(i int, t time.Time, v telemetry.Values, rebooted bool) history.Sample {
	x := history.Sample{Node: uint32(1000 + i), T: t, FreeMemory: v.FreeMemory, LatencyUs: v.Latency, MessagesRx: v.MessagesRx,
		MessagesTx: v.MessagesTx, MessagesDropped: v.MessagesDropped, Uptime: v.Uptime, RSSI: v.RSSI, WiFi: v.WiFi,
		LossPermille: v.LossPermille, Connections: v.Connections, Hops: 1 + i%6, Health: 80 + i%20}
	if rebooted {
		x.Reboots = 1
	}
	return x
}

// decodeCost is the collector's cost per telemetry package: the package
// JSON and base64 (status.Decode) and the frame (telemetry.Decoder), over
// a minute of every node's packages encoded beforehand.
func decodeCost(nodes int, interval time.Duration) (decodeFigures, error) {
	const seconds = 120
	encs := make([]*telemetry.Encoder, nodes)
	for i := range encs {
		encs[i] = telemetry.NewEncoder(telemetry.EncoderConfig{})
	}
	pkgs := make([][]byte, 0, nodes*seconds)
	step := int64(interval / time.Second)
	for s := int64(0); s < seconds*step; s += step {
		for i, e := range encs {
			p := status.TelemetryPackage{From: uint32(1000 + i), Dest: 1, Frame: e.Encode(benchEpoch.Add(time.Duration(s)*time.Second), 0, benchValues(i, s), false)}
			pkgs = append(pkgs, p.AppendJSON(nil))
		}
	}
	dec := telemetry.NewDecoder()
	runtime.GC()
	cpu0, start := cpuTime(), time.Now()
	for _, raw := range pkgs {
		p, err := status.Decode(raw)
		if err != nil {
			return decodeFigures{}, err
		}
		tp, ok := p.(*status.TelemetryPackage)
		if !ok {
			return decodeFigures{}, fmt.Errorf("decoded %T, want a telemetry package", p)
		}
		if _, err := dec.Decode(tp.From, tp.Frame); err != nil {
			return decodeFigures{}, err
		}
	}
	n := float64(len(pkgs))
	return decodeFigures{wallNS: float64(time.Since(start).Nanoseconds()) / n, cpuNS: float64((cpuTime() - cpu0).Nanoseconds()) / n,
		bytes: len(pkgs[len(pkgs)-1])}, nil
}

type decodeFigures struct {
	wallNS, cpuNS float64
	bytes         int
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runHistoryBench(ctx context.Context, cfg historyBenchConfig) (historyBenchResult, error) {
	res := historyBenchResult{Nodes: cfg.Nodes, Interval: cfg.Interval.String(), Simulated: cfg.Duration.String()}
	before, err := decodeCost(cfg.Nodes, cfg.Interval)
	if err != nil {
		return res, fmt.Errorf("decode baseline: %w", err)
	}
	res.PackageBytes = before.bytes
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshfleet-bench-history-"); err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
	}
	path := filepath.Join(dir, "history.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	s, err := history.Open(path, history.Options{})
	if err != nil {
		return res, err
	}
	defer s.Close()

	runtime.GC()
	cpu0, wall0 := cpuTime(), time.Now()
	step := int64(cfg.Interval / time.Second)
	end := int64(cfg.Duration / time.Second)
	for sec := int64(0); sec < end; sec += step {
		t := benchEpoch.Add(time.Duration(sec) * time.Second)
		for i := range cfg.Nodes {
			x := benchSample(i, t, benchValues(i, sec), i%10 == 0 && sec == 43200)
			// A bench must not drop: when the queue is full it waits for
			// the writer (the gateway would drop and count instead).
			for !s.AddSample(x) {
				if err := s.Drain(ctx); err != nil {
					return res, err
				}
			}
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	// Sync writes the minute in progress too: every sample is on disk.
	if err := s.Sync(ctx); err != nil {
		return res, err
	}
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	st := s.Stats()
	// AddSample counts the full queue's refusals as drops, but the bench
	// retried them: dropped is what never reached the database.
	res.Samples = st.SamplesWritten
	res.Dropped = uint64(cfg.Nodes)*uint64((end+step-1)/step) - st.SamplesWritten
	res.WallS = wall.Seconds()
	res.IngestWallNS = float64(wall.Nanoseconds()) / float64(st.SamplesWritten)
	res.IngestCPUNS = float64(cpu.Nanoseconds()) / float64(st.SamplesWritten)

	// One node's day at 1-minute steps (the rollups), as the dashboard
	// asks for it.
	svc := s.Service(func() time.Time { return benchEpoch.Add(cfg.Duration) })
	from := benchEpoch.Add(cfg.Duration).Add(-24 * time.Hour)
	if from.Before(benchEpoch) {
		from = benchEpoch
	}
	var times []float64
	for range 21 {
		t0 := time.Now()
		ser, err := svc.NodeHistory(ctx, fleet.SeriesQuery{Node: 1000 + uint32(cfg.Nodes/2), Metric: "free_memory_bytes", From: from, To: benchEpoch.Add(cfg.Duration), Step: time.Minute})
		if err != nil {
			return res, err
		}
		times = append(times, float64(time.Since(t0).Microseconds())/1000)
		res.QueryPoints = len(ser.Points)
	}
	res.QueryRuns = len(times)
	res.QueryMS = median(times)
	t0 := time.Now()
	raw, err := svc.NodeHistory(ctx, fleet.SeriesQuery{Node: 1000 + uint32(cfg.Nodes/2), Metric: "latency_ms", From: benchEpoch.Add(cfg.Duration).Add(-time.Hour), Step: 10 * time.Second})
	if err != nil {
		return res, err
	}
	res.RawQueryMS, res.RawQueryPoints = float64(time.Since(t0).Microseconds())/1000, len(raw.Points)

	// The decode baseline again, now: the machine's load may have
	// changed during the ingest; the mean of both is the baseline.
	after, err := decodeCost(cfg.Nodes, cfg.Interval)
	if err != nil {
		return res, err
	}
	res.DecodeBeforeNS, res.DecodeAfterNS = before.wallNS, after.wallNS
	res.DecodeNS = (before.wallNS + after.wallNS) / 2
	res.DecodeCPUNS = (before.cpuNS + after.cpuNS) / 2
	if err := s.Close(); err != nil {
		return res, err
	}
	rows, err := history.CountRows(path)
	if err != nil {
		return res, err
	}
	res.RawRows, res.RollupRows = rows.Samples, rows.Rollups
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			res.DBBytes += fi.Size()
		}
	}
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
