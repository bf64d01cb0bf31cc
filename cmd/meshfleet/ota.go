package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func init() {
	cmd := &cobra.Command{Use: "ota", Short: "Distribute firmware over the mesh"}
	cmd.AddCommand(newOTAPushCmd())
	rootCmd.AddCommand(cmd)
}

type pushOptions struct {
	role, hardware, version string
	mode, method            string
	connect                 []string
	listen                  string
	nodeID                  uint32
	root                    bool
	simNodes                int
	simModel                string
	simLoss                 float64
	seed                    uint64
	store                   string
	nodes                   []uint
	forced                  bool
	timeout                 time.Duration
	asJSON                  bool
	simReceiver             string
	simPeerToPeer           bool
}

func newOTAPushCmd() *cobra.Command {
	var o pushOptions
	cmd := &cobra.Command{
		Use:   "push IMAGE|ID --role R --hardware H [--mode auto|stock|stock-turbo|pipelined|broadcast] [--compress deflate|heatshrink|none] [--connect host:port | --sim-nodes N]",
		Short: "Distribute an image to the nodes of a role and hardware",
		Long: `Distributes a firmware image: IMAGE is a file, or the id of an image in the
firmware store (--store). Stock nodes always get the stock protocol (announce,
one request at a time, base64); Go nodes running meshfleet receivers use the
mode chosen with --mode, with the transfer compressed with --compress.

With --connect (or --listen) the distributor joins a real mesh over TCP and
runs until every node listed with --nodes confirmed the image, or --timeout.
With --sim-nodes it runs a simulated mesh of N receivers instead (virtual
time). Progress is shown per node; --json prints one event a line. Stock
receivers never report: their progress is estimated from their requests, and
they count as installed once served the last chunk and quiet or rebooted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := loadPushImage(args[0], &o)
			if err != nil {
				return err
			}
			mode, err := ota.ParseMode(pushMode(o))
			if err != nil {
				return err
			}
			if mode == ota.ModeStockTurbo && !cmd.Flags().Changed("compress") {
				o.method = "none" // stock receivers cannot decompress
			}
			if _, err := compress.ParseMethod(o.method); err != nil {
				return err
			}
			var nodes []uint32
			for _, n := range o.nodes {
				if n == 0 || n > 1<<32-1 {
					return fmt.Errorf("--nodes: %d is not a node id", n)
				}
				nodes = append(nodes, uint32(n))
			}
			spec := ota.CampaignSpec{Image: img, Mode: mode, Method: o.method, Nodes: nodes, Forced: o.forced}
			if mode == ota.ModeStockTurbo {
				// Every stock node of the role takes what is flooded: the
				// list names the nodes the push waits for, not its targets.
				spec.Nodes = nil
			}
			view := newProgressView(cmd.OutOrStdout(), o.asJSON)
			switch {
			case o.simNodes > 0 && (len(o.connect) > 0 || o.listen != ""):
				return errors.New("--sim-nodes and --connect/--listen exclude each other")
			case o.simNodes > 0:
				return pushSimulated(cmd.Context(), o, spec, view)
			case len(o.connect) > 0 || o.listen != "":
				return pushTCP(cmd.Context(), o, spec, view)
			}
			return errors.New("nowhere to push: give --connect host:port, --listen addr or --sim-nodes N")
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", "", "target role (default: the stored image's)")
	f.StringVar(&o.hardware, "hardware", "", "target hardware, e.g. ESP32 (default: the stored image's)")
	f.StringVar(&o.version, "version", "", "version label")
	f.StringVar(&o.mode, "mode", "auto", "mode: stock, stock-turbo (stock receivers, one flood per chunk), pipelined or broadcast (Go receivers); auto: stock-turbo to simulated stock receivers, else broadcast")
	f.StringVar(&o.method, "compress", "deflate", "compression for Go receivers: deflate, heatshrink or none")
	f.StringSliceVar(&o.connect, "connect", nil, "mesh node to connect to (host:port), repeatable")
	f.StringVar(&o.listen, "listen", "", "also accept mesh connections on this address")
	f.Uint32Var(&o.nodeID, "id", 0x4d460001, "node id of the distributor")
	f.BoolVar(&o.root, "root", true, "advertise the distributor as the mesh root (as otaSender.ino does)")
	f.IntVar(&o.simNodes, "sim-nodes", 0, "run a simulated mesh of N receivers instead")
	f.StringVar(&o.simModel, "sim-model", "esp8266", "link model of the simulated mesh: "+strings.Join(sim.Models(), ", "))
	f.Float64Var(&o.simLoss, "sim-loss", 0, "message loss of the simulated links")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the simulated mesh")
	f.BoolVar(&o.simPeerToPeer, "sim-peer-to-peer", true, "our simulated receivers serve the image they verified to other nodes and fetch from the nearest holder")
	f.StringVar(&o.simReceiver, "sim-receiver", "meshfleet", "receivers of the simulated mesh: meshfleet, or stock (the model of the stock C++ receiver)")
	f.StringVar(&o.store, "store", "firmware", "firmware store directory (for an image id)")
	f.UintSliceVar(&o.nodes, "nodes", nil, "only these node ids (the push ends when all confirmed); with stock-turbo every stock node of the role takes the image and the push ends when these are through")
	f.BoolVar(&o.forced, "forced", false, "install even where the same image runs unconfirmed")
	f.DurationVar(&o.timeout, "timeout", time.Hour, "give up after this long (virtual time with --sim-nodes)")
	f.BoolVar(&o.asJSON, "json", false, "print events as JSON lines")
	return cmd
}

// loadPushImage reads IMAGE as a file, or else as an id in the store.
// An argument that cannot be an image id was meant as a file, so a
// missing one is reported as a missing file.
func loadPushImage(arg string, o *pushOptions) (ota.Image, error) {
	img := ota.Image{Role: o.role, Hardware: o.hardware, Version: o.version}
	data, fileErr := os.ReadFile(arg)
	switch {
	case fileErr == nil:
		img.Data = data
	case !errors.Is(fileErr, os.ErrNotExist):
		return img, fmt.Errorf("read image: %w", fileErr)
	case firmware.ValidateID(arg) != nil:
		return img, fileErr
	default:
		if _, err := os.Stat(o.store); errors.Is(err, os.ErrNotExist) {
			return img, fmt.Errorf("%w, and there is no firmware store %s (--store) to find an image id in", fileErr, o.store)
		}
		st, err := firmware.Open(o.store, nil)
		if err != nil {
			return img, err
		}
		meta, err := st.Get(arg)
		if errors.Is(err, firmware.ErrNotFound) {
			return img, fmt.Errorf("%w, and the firmware store %s has no image %s", fileErr, o.store, arg)
		}
		if err != nil {
			return img, err
		}
		if img.Data, err = st.ReadAll(arg); err != nil {
			return img, err
		}
		img.MD5, img.Signature, img.Manifest, img.ManifestSig = meta.MD5, meta.Signature, meta.Manifest, meta.ManifestSig
		if img.Role == "" {
			img.Role = meta.Role
		}
		if img.Hardware == "" {
			img.Hardware = meta.Hardware
		}
		if img.Version == "" {
			img.Version = meta.Version
		}
	}
	if img.Role == "" || img.Hardware == "" {
		return img, errors.New("--role and --hardware are required for an image file")
	}
	if err := firmware.ValidateRole(img.Role); err != nil {
		return img, fmt.Errorf("--role: %w", err)
	}
	return img, nil
}

func pushTCP(ctx context.Context, o pushOptions, spec ota.CampaignSpec, view *progressView) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	dist := ota.NewDistributor(ota.DistributorConfig{Compress: ota.Compress})
	d, err := tcp.New(tcp.Config{
		Node:    mesh.Config{ID: o.nodeID, Root: o.root, ContainsRoot: o.root},
		Plugins: []mesh.Plugin{dist},
		Listen:  o.listen,
		Connect: o.connect,
	})
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	// Wait for the first connection so the tree (and the chunk size) is known.
	if err := waitConnected(ctx, d, view); err != nil {
		return err
	}
	var c *ota.Campaign
	var startErr error
	if err := d.Do(ctx, func(now time.Time, _ *mesh.Node) { c, startErr = dist.Start(now, spec) }); err != nil {
		return err
	}
	if startErr != nil {
		return startErr
	}
	view.started(c)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case ev := <-d.Events():
			view.event(ev)
		case <-tick.C:
			view.render()
		case err := <-runErr:
			return err
		case <-ctx.Done():
			view.render()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("campaign %s still %s after %s", c.ID, view.state, o.timeout)
			}
			return nil
		}
		if view.finished() {
			view.render()
			cancel()
			<-runErr
			return view.result()
		}
		if spec.Mode == ota.ModeStockTurbo && len(o.nodes) > 0 && view.through(o.nodes) {
			view.render()
			cancel()
			<-runErr
			return view.resultOf(o.nodes)
		}
	}
}

func waitConnected(ctx context.Context, d *tcp.Driver, view *progressView) error {
	for {
		select {
		case ev := <-d.Events():
			if _, ok := ev.(mesh.NewConnection); ok {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("no mesh connection: %w", ctx.Err())
		}
	}
}

func pushSimulated(ctx context.Context, o pushOptions, spec ota.CampaignSpec, view *progressView) error {
	m, err := sim.ParseModel(o.simModel)
	if err != nil {
		return err
	}
	m.Link.Loss = o.simLoss
	view.sim = true
	kind := scenario.OurReceiver
	switch o.simReceiver {
	case "meshfleet":
	case "stock":
		kind = scenario.StockReceiver
	default:
		return fmt.Errorf("--sim-receiver: %q is not one of meshfleet, stock", o.simReceiver)
	}
	turbo := spec.Mode == ota.ModeStockTurbo
	if turbo {
		kind = scenario.StockReceiver // stock-turbo serves stock receivers
	}
	dist := ota.NewDistributor(ota.DistributorConfig{Compress: ota.Compress, StockOnly: turbo,
		Radio: ota.Radio{Overhead: m.Radio.TxOverhead + m.Link.Latency, ByteTime: m.Radio.ByteTime}})
	fleet, err := scenario.Build(scenario.Spec{
		Devices: o.simNodes, Seed: o.seed, Model: m,
		OnEvent: func(_ *sim.Node, at time.Time, ev mesh.Event) {
			view.now = at
			view.event(ev)
		},
		Layout:  scenario.Layout{Topology: sim.TopologyTree, MaxDepth: 6},
		Root:    scenario.Root{ID: o.nodeID, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }},
		FirstID: 1000,
		OTA:     scenario.OTA{Receiver: kind, Role: spec.Image.Role, Hardware: spec.Image.Hardware, PeerToPeer: o.simPeerToPeer},
	})
	if err != nil {
		return err
	}
	net, root := fleet.Net, fleet.Root
	if err := fleet.Converge(10 * time.Minute); err != nil {
		return fmt.Errorf("simulated mesh: %w", err)
	}
	if len(spec.Nodes) == 0 && !turbo {
		spec.Nodes = fleet.DeviceIDs()
	}
	if turbo {
		return pushSimulatedStock(ctx, o, fleet, dist, spec, view)
	}
	var c *ota.Campaign
	root.Step(func(now time.Time, _ sim.Machine) { c, err = dist.Start(now, spec) })
	if err != nil {
		return err
	}
	view.started(c)
	start := net.Now()
	next := start
	net.RunUntil(func() bool {
		if ctx.Err() != nil {
			return true
		}
		if net.Now().Sub(next) >= 0 {
			view.render()
			next = net.Now().Add(5 * time.Second)
		}
		return view.finished()
	}, o.timeout)
	view.render()
	if !view.finished() {
		return fmt.Errorf("campaign %s still %s after %s of virtual time", c.ID, view.state, o.timeout)
	}
	if !view.json {
		fmt.Fprintf(view.w, "done in %.1f s of virtual time\n", net.Now().Sub(start).Seconds())
	}
	return view.result()
}

// pushSimulatedStock runs a campaign to simulated stock receivers, which
// report nothing: it ends when every one runs the image, as the
// simulation (not the mesh) shows.
func pushSimulatedStock(ctx context.Context, o pushOptions, fleet *scenario.Fleet, dist *ota.Distributor, spec ota.CampaignSpec, view *progressView) error {
	net := fleet.Net
	var c *ota.Campaign
	var err error
	fleet.Root.Step(func(now time.Time, _ sim.Machine) { c, err = dist.Start(now, spec) })
	if err != nil {
		return err
	}
	view.started(c)
	done := func() int {
		n := 0
		for _, d := range fleet.Devices {
			if d.Runs(c.Image.MD5) {
				n++
			}
		}
		return n
	}
	start := net.Now()
	net.RunUntil(func() bool { return ctx.Err() != nil || done() == len(fleet.Devices) }, o.timeout)
	n := done()
	if n < len(fleet.Devices) {
		return fmt.Errorf("campaign %s: %d/%d simulated stock receivers run the image after %s of virtual time", c.ID, n, len(fleet.Devices), o.timeout)
	}
	fmt.Fprintf(view.w, "%d/%d simulated stock receivers run the image; done in %.1f s of virtual time\n", n, len(fleet.Devices), net.Now().Sub(start).Seconds())
	return nil
}

// progressView shows per-node progress as bars, or events as JSON lines.
type progressView struct {
	w     io.Writer
	json  bool
	sim   bool
	now   time.Time
	c     *ota.Campaign // immutable fields only: the loop owns the rest
	state ota.CampaignState
	nodes map[uint32]ota.Progress
	lines int
	tty   bool
}

func newProgressView(w io.Writer, asJSON bool) *progressView {
	v := &progressView{w: w, json: asJSON, nodes: map[uint32]ota.Progress{}}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			v.tty = true
		}
	}
	return v
}

func (v *progressView) started(c *ota.Campaign) {
	v.c = c
	if v.state == "" {
		v.state = ota.CampaignRunning
	}
	if !v.json {
		ver := ""
		if c.Image.Version != "" {
			ver = " version " + c.Image.Version
		}
		fmt.Fprintf(v.w, "campaign %s: image %s (%d bytes%s) to %s/%s, mode %s, compress %s\n",
			c.ID, c.Image.MD5, c.Image.Size, ver, c.Image.Role, c.Image.Hardware, c.Mode, c.Method)
	}
}

type jsonEvent struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"`
	Campaign string    `json:"campaign,omitempty"`
	State    string    `json:"state"`
	Node     uint32    `json:"node,omitempty"`
	Done     int       `json:"chunks_done,omitempty"`
	Total    int       `json:"chunks_total,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Rate     float64   `json:"rate_bps,omitempty"`
	ETA      float64   `json:"eta_s,omitempty"`
	Error    string    `json:"error,omitempty"`
	// NodeState is a node's state in a campaign event about one node.
	NodeState string `json:"node_state,omitempty"`
	Estimated bool   `json:"estimated,omitempty"`
}

func (v *progressView) event(ev mesh.Event) {
	now := v.now
	if !v.sim {
		now = time.Now()
	}
	var je *jsonEvent
	switch e := ev.(type) {
	case ota.Progress:
		v.nodes[e.Node] = e
		je = &jsonEvent{Time: now, Event: "progress", Campaign: e.Transfer, State: string(e.State), Node: e.Node, Done: e.Done,
			Total: e.Total, Bytes: e.Bytes, Rate: e.Rate, ETA: e.ETA.Seconds(), Error: e.Err}
	case ota.CampaignEvent:
		if e.Node == 0 {
			v.state = e.State
		}
		// A simulated receiver's own events say more, but stock
		// receivers have none: the distributor's estimate is all there is.
		if e.Node != 0 && (!v.sim || e.Progress.Estimated) {
			p := e.Progress
			v.nodes[e.Node] = ota.Progress{Node: e.Node, State: p.State, Done: p.Done, Total: p.Total, Bytes: p.Bytes, Rate: p.Rate, ETA: p.ETA, Err: p.Err, Estimated: p.Estimated}
		}
		je = &jsonEvent{Time: now, Event: "campaign", Campaign: e.Campaign, State: string(e.State), Node: e.Node,
			Done: e.Progress.Done, Total: e.Progress.Total, Error: e.Progress.Err, NodeState: string(e.Progress.State), Estimated: e.Progress.Estimated}
	}
	if je != nil && v.json {
		b, _ := json.Marshal(je)
		fmt.Fprintln(v.w, string(b))
	}
}

// finished reports whether the campaign ended, as its events said (the
// campaign object belongs to the mesh loop).
func (v *progressView) finished() bool {
	return v.c != nil && v.state != ota.CampaignRunning && v.state != ota.CampaignPaused
}

func (v *progressView) result() error {
	if v.state == ota.CampaignCompleted {
		return nil
	}
	return fmt.Errorf("campaign %s ended %s", v.c.ID, v.state)
}

// through reports whether each of the nodes reached a final state (a
// stock-turbo campaign for a role runs on after the nodes a push waits
// for are through).
func (v *progressView) through(nodes []uint) bool {
	for _, id := range nodes {
		p, ok := v.nodes[uint32(id)]
		if !ok || !(ota.NodeProgress{State: p.State}).Terminal() {
			return false
		}
	}
	return true
}

// resultOf is nil when every one of the nodes installed or confirmed the
// image, else an error naming those that did not.
func (v *progressView) resultOf(nodes []uint) error {
	var bad []string
	for _, id := range nodes {
		p := v.nodes[uint32(id)]
		if p.State != ota.StateInstalled && p.State != ota.StateConfirmed {
			bad = append(bad, fmt.Sprintf("%d %s", id, p.State))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("campaign %s: not installed: %s", v.c.ID, strings.Join(bad, ", "))
	}
	return nil
}

// summaryStates is the order of the summary line: confirmed first (the
// goal), then the others as a transfer goes through them.
var summaryStates = []ota.State{ota.StateConfirmed, ota.StateInstalled, ota.StateIdle, ota.StateDownloading, ota.StateVerifying,
	ota.StateSwitching, ota.StateFailed, ota.StateRolledBack, ota.StateRefused, ota.StateLost}

// stateCounts is "1 confirmed, 2 switching, ... (7 nodes)": confirmed
// always, every other state a node is in, so the counts add up to the
// nodes.
func stateCounts(nodes int, counts map[ota.State]int) string {
	parts := []string{fmt.Sprintf("%d confirmed", counts[ota.StateConfirmed])}
	for _, st := range summaryStates[1:] {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], strings.ReplaceAll(string(st), "_", " ")))
		}
	}
	var other []string // states newer than this list
	for st, n := range counts {
		if !slices.Contains(summaryStates, st) {
			other = append(other, fmt.Sprintf("%d %s", n, st))
		}
	}
	slices.Sort(other)
	return fmt.Sprintf("%s (%d nodes)", strings.Join(append(parts, other...), ", "), nodes)
}

func (v *progressView) render() {
	if v.json || v.c == nil {
		return
	}
	ids := make([]uint32, 0, len(v.nodes))
	for id := range v.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	counts := map[ota.State]int{}
	estimated := false
	for _, id := range ids {
		p := v.nodes[id]
		counts[p.State]++
		frac := 0.0
		if p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		if p.State == ota.StateConfirmed || p.State == ota.StateInstalled {
			frac = 1
		}
		state := string(p.State)
		if p.Estimated {
			state += "*"
			estimated = true
		}
		const width = 24
		fill := int(frac * width)
		eta := ""
		if p.State == ota.StateDownloading && p.ETA > 0 {
			eta = "ETA " + p.ETA.Round(time.Second).String()
		}
		fmt.Fprintf(&b, "%10d %-12s [%s%s] %3.0f%% %5d/%-5d %8.1f KB/s %s\n", id, state,
			strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100, p.Done, p.Total, p.Rate/1000, eta)
	}
	if estimated {
		b.WriteString("* estimated from the requests of a stock receiver, which does not report\n")
	}
	fmt.Fprintf(&b, "campaign %s %s: %s\n", v.c.ID, v.state, stateCounts(len(ids), counts))
	if v.tty && v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
	}
	fmt.Fprint(v.w, b.String())
	v.lines = strings.Count(b.String(), "\n")
}
