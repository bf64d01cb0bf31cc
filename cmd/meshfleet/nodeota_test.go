package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/gateway"
	"github.com/meshfleet/meshfleet/linuxnode"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

const (
	otaRole     = "gateway-box"
	otaHardware = "linux-test"
	otaWait     = 20 * time.Second
)

// testImage is a firmware-like image: short instructions from a small
// opcode set, a string table and padding, so that compression has work to
// do without making the image trivial.
func testImage(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x6669726d))
	words := []string{"meshfleet", "painlessMesh", "ERROR: %s", "sensor", "wifi", "%d bytes", "OTA part %u/%u"}
	b := make([]byte, 0, size+64)
	for len(b) < size {
		switch r.IntN(10) {
		case 0:
			b = append(b, words[r.IntN(len(words))]...)
			b = append(b, 0)
		case 1:
			b = append(b, make([]byte, r.IntN(32))...)
		default:
			b = append(b, byte(0x10+r.IntN(12)), byte(r.Uint32()), byte(r.IntN(16)), 0x40)
		}
	}
	return b[:size]
}

// randomImage is an incompressible image.
func randomImage(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x72616e64))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// lineLog collects the JSON lines a node's console writes and wakes
// waiters.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []map[string]any
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(l.partial[:i], &m); err != nil {
			m = map[string]any{"event": "not JSON", "text": string(l.partial[:i])}
		}
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, m)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// wait returns the first line matching pred, waiting up to otaWait.
func (l *lineLog) wait(t *testing.T, what string, pred func(m map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.NewTimer(otaWait)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["event"] == "not JSON" {
				l.mu.Unlock()
				t.Fatalf("console wrote a line that is not JSON: %s", m["text"])
			}
			if pred(m) {
				l.mu.Unlock()
				return m
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %s line within %s; lines:\n%s", what, otaWait, l.dump())
		}
	}
}

func (l *lineLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, m := range l.lines {
		if m["event"] == "package" {
			continue
		}
		j, _ := json.Marshal(m)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// otaLine matches an "ota" line in state for image md5 ("" any image).
func otaLine(state, md5 string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["event"] == "ota" && m["state"] == state && (md5 == "" || m["md5"] == md5)
	}
}

// testNode is `meshfleet node` run in-process: built by buildNode and
// run by runNode, exactly as the command does, with its console output
// parsed.
type testNode struct {
	cfg    nodeConfig
	d      *tcp.Driver
	dev    *linuxnode.Device
	log    *lineLog
	cancel context.CancelFunc
	done   chan error
	exited bool
}

func startNode(t *testing.T, cfg nodeConfig, exitOnSlotChange bool) *testNode {
	t.Helper()
	d, dev, err := buildNode(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{cfg: cfg, d: d, dev: dev, log: newLineLog(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- runNode(ctx, d, dev, blockingReader{ctx}, n.log, exitOnSlotChange) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop ends the node and waits until its slot store is closed.
func (n *testNode) stop(t *testing.T) {
	t.Helper()
	if n.exited {
		return
	}
	n.cancel()
	n.waitExit(t)
}

func (n *testNode) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-n.done:
		n.exited = true
		if err != nil {
			t.Errorf("node %d: %v", n.cfg.ID, err)
		}
	case <-time.After(otaWait):
		t.Fatalf("node %d did not stop", n.cfg.ID)
	}
}

// restart stops the node and starts it again on the same slot directory
// and address, with cfg changed by change (if not nil).
func (n *testNode) restart(t *testing.T, change func(*nodeConfig)) *testNode {
	t.Helper()
	n.stop(t)
	cfg := n.cfg
	if change != nil {
		change(&cfg)
	}
	return startNode(t, cfg, false)
}

func (n *testNode) receiverStats(t *testing.T) ota.ReceiverStats {
	t.Helper()
	var s ota.ReceiverStats
	if err := n.d.Do(context.Background(), func(time.Time, *mesh.Node) { s = n.dev.Receiver().Stats() }); err != nil {
		t.Fatal(err)
	}
	return s
}

// newOTANode starts an OTA node listening on a free local port.
func newOTANode(t *testing.T, id uint32, dev linuxnode.Config) *testNode {
	t.Helper()
	dev.Role, dev.Hardware = otaRole, otaHardware
	if dev.SlotDir == "" {
		dev.SlotDir = filepath.Join(t.TempDir(), "slots")
	}
	if dev.StatusInterval == 0 {
		dev.StatusInterval = time.Second
	}
	dev.Version = "factory-1.0"
	n := startNode(t, nodeConfig{ID: id, Listen: "127.0.0.1:0", MaxMessageSize: tcp.DefaultMaxMessageSize, Device: dev}, false)
	// Restarts listen on the same address, where the gateway redials.
	n.cfg.Listen = n.d.Addr().String()
	return n
}

// startGateway runs a gateway (no MQTT, HTTP on a free port) that
// connects to the nodes' addresses, announcing every second.
func startGateway(t *testing.T, nodes ...*testNode) *gateway.Gateway {
	t.Helper()
	return startGatewayWith(t, nil, nodes...)
}

// startGatewayWith is startGateway with the configuration changed by
// change, if not nil.
func startGatewayWith(t *testing.T, change func(*gateway.Config), nodes ...*testNode) *gateway.Gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := gateway.DefaultConfig()
	cfg.Node.ID = 1
	cfg.Node.Root = true
	for _, n := range nodes {
		cfg.Node.Connect = append(cfg.Node.Connect, n.cfg.Listen)
	}
	cfg.MQTT.Enabled = false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Firmware.Dir = filepath.Join(dir, "firmware")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.OTA.AnnounceInterval = gateway.Duration(time.Second)
	if change != nil {
		change(&cfg)
	}
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.RunTCP(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway: %v", err)
	}
	for _, n := range nodes {
		n.log.wait(t, "new_connection to the gateway", func(m map[string]any) bool {
			return m["event"] == "new_connection" && m["node"] == 1.0
		})
	}
	return g
}

// startCampaign uploads img and starts a campaign to the nodes.
func startCampaign(t *testing.T, g *gateway.Gateway, img []byte, version, mode, method string, nodes ...*testNode) fleet.Campaign {
	t.Helper()
	fi, _, err := g.AddImage(context.Background(), fleet.ImageUpload{Role: otaRole, Hardware: otaHardware, Version: version, MD5: md5hex(img)}, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	req := fleet.CampaignRequest{Image: fi.ID, Mode: mode, Compress: method}
	for _, n := range nodes {
		req.Nodes = append(req.Nodes, n.cfg.ID)
	}
	c, err := g.StartCampaign(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCampaign waits until the gateway reports campaign id in state.
func waitCampaign(t *testing.T, g *gateway.Gateway, id, state string) fleet.Campaign {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), otaWait)
	defer cancel()
	events := g.Subscribe(ctx)
	for {
		c, err := g.Campaign(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == state {
			return c
		}
		select {
		case <-events:
		case <-ctx.Done():
			t.Fatalf("campaign %s is %s, not %s: %+v", id, c.State, state, c.Nodes)
		}
	}
}

// eventually polls cond until it holds, for state only visible by
// asking (the gateway's status model).
func eventually(t *testing.T, what string, cond func() bool, last func() string) {
	t.Helper()
	deadline := time.Now().Add(otaWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, otaWait, last())
		}
		<-tick.C
	}
}

// checkSwitched checks that the node switched to img: the "switched" line
// names the slot file, which holds exactly img, and the slot store has it
// pending. It returns the slot.
func checkSwitched(t *testing.T, n *testNode, img []byte) slot.Slot {
	t.Helper()
	sum := md5hex(img)
	m := n.log.wait(t, "switched", otaLine(linuxnode.StateSwitched, sum))
	path, _ := m["slot_path"].(string)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("node %d: switched line %v: %v", n.cfg.ID, m, err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("node %d: %s holds %d bytes (md5 %s), want the %d-byte image %s", n.cfg.ID, path, len(got), md5hex(got), len(img), sum)
	}
	st := n.dev.Store().State()
	if st.Pending == "" || string(st.Pending) != m["slot"] || st.Slot(st.Pending).Status != slot.Ready || st.Slot(st.Pending).Image.MD5 != sum {
		t.Fatalf("node %d: slot state after the switch %+v, want %s pending and ready", n.cfg.ID, st, m["slot"])
	}
	return st.Pending
}

// checkConfirmed restarts-side check: the trial line, then confirmation
// after the node joined, and the slot store committed to the new slot.
func checkConfirmed(t *testing.T, n *testNode, img []byte, sl slot.Slot) {
	t.Helper()
	sum := md5hex(img)
	trial := n.log.wait(t, "trial", otaLine(linuxnode.StateTrial, sum))
	if trial["slot"] != string(sl) || trial["deadline"] == nil {
		t.Fatalf("node %d: trial line %v, want slot %s and a deadline", n.cfg.ID, trial, sl)
	}
	n.log.wait(t, "confirmed", otaLine(string(ota.StateConfirmed), sum))
	n.log.wait(t, "new_connection", func(m map[string]any) bool { return m["event"] == "new_connection" })
	st := n.dev.Store().State()
	if st.Pending != "" || st.Active != sl || st.Last.State != slot.Confirmed || st.Slot(sl).Image.MD5 != sum {
		t.Fatalf("node %d: slot state after confirming %+v, want %s active and confirmed", n.cfg.ID, st, sl)
	}
}

// Two Linux nodes take three campaigns over real TCP, one per mode, each
// ending with the image switched, the nodes restarted on the same slot
// directories, and the new image confirmed once they joined the mesh.
func TestNodeOTACampaignsOverTCP(t *testing.T) {
	t.Parallel()
	a := newOTANode(t, 101, linuxnode.Config{})
	b := newOTANode(t, 102, linuxnode.Config{})
	g := startGateway(t, a, b)
	// Before any update the nodes run the factory image, which only the
	// configured version names; the gateway learns it from their status.
	for _, n := range []*testNode{a, b} {
		var fn fleet.Node
		eventually(t, fmt.Sprintf("gateway sees node %d's status", n.cfg.ID), func() bool {
			var err error
			fn, err = g.Node(t.Context(), n.cfg.ID)
			return err == nil && fn.Status == "online" && fn.Firmware == "factory-1.0" && fn.FirmwareMD5 == "" && fn.Hardware != ""
		}, func() string { return fmt.Sprintf("%+v", fn) })
	}

	modes := []struct{ mode, method string }{
		{"stock", "none"},
		{"pipelined", "heatshrink"},
		{"broadcast", "deflate"},
	}
	var img []byte
	for i, m := range modes {
		img = testImage(uint64(i+1), 64<<10)
		version := fmt.Sprintf("2.%d.0", i)
		c := startCampaign(t, g, img, version, m.mode, m.method, a, b)
		slots := map[uint32]slot.Slot{}
		for _, n := range []*testNode{a, b} {
			slots[n.cfg.ID] = checkSwitched(t, n, img)
			p := n.log.wait(t, "download progress", otaLine(string(ota.StateDownloading), md5hex(img)))
			if p["mode"] != m.mode || p["total"].(float64) <= 0 || p["transfer"] != c.ID {
				t.Fatalf("%s: node %d progress line %v", m.mode, n.cfg.ID, p)
			}
		}
		// Both still run the old image until they restart; the campaign
		// waits for them.
		if c, _ := g.Campaign(t.Context(), c.ID); c.State != "running" {
			t.Fatalf("%s: campaign %s before the restarts, want running", m.mode, c.State)
		}
		a = a.restart(t, nil)
		b = b.restart(t, nil)
		for _, n := range []*testNode{a, b} {
			checkConfirmed(t, n, img, slots[n.cfg.ID])
		}
		done := waitCampaign(t, g, c.ID, "completed")
		if done.Completed != 2 || done.Failed != 0 {
			t.Fatalf("%s: campaign %+v, want 2 completed", m.mode, done)
		}
		if v := a.dev.Store().Active(); v.Version != version {
			t.Fatalf("%s: active image version %q, want %q", m.mode, v.Version, version)
		}
	}

	// The status reporters describe what runs now: the slot store's
	// image, the process's free memory, the receiver's state.
	sum := md5hex(img)
	for _, n := range []*testNode{a, b} {
		var m status.Metrics
		if err := n.d.Do(context.Background(), func(now time.Time, _ *mesh.Node) { m = n.dev.Reporter().Snapshot(now) }); err != nil {
			t.Fatal(err)
		}
		if m.FirmwareMD5 != sum || m.FirmwareVersion != "2.2.0" || m.FreeMemory == 0 || m.OTAState != status.OTAConfirmed || m.OTAProgress != 100 {
			t.Fatalf("node %d reports %+v, want firmware 2.2.0 %s, free memory and OTA confirmed", n.cfg.ID, m, sum)
		}
	}
}

// A node stopped in the middle of a download resumes it after a restart
// and does not fetch the chunks it already holds.
func TestNodeOTAResumesDownload(t *testing.T) {
	t.Parallel()
	n := newOTANode(t, 201, linuxnode.Config{})
	g := startGateway(t, n)
	// Stock replies follow the loopback link, so the transfer takes about
	// as long as the node's writes: 15 MiB is some seconds, and the first
	// progress line (after 1 s) comes mid-way.
	img := randomImage(7, 15<<20)
	c := startCampaign(t, g, img, "3.0.0", "stock", "deflate", n)
	n.log.wait(t, "progress with chunks", func(m map[string]any) bool {
		return otaLine(string(ota.StateDownloading), md5hex(img))(m) && m["chunks"].(float64) > 0
	})
	if _, err := g.PauseCampaign(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	n = n.restart(t, nil)
	staged := n.dev.Store().Status().Download
	if staged == nil || staged.Have == 0 || staged.Have >= staged.Chunks {
		t.Fatalf("staged download after the restart: %+v, want some chunks held", staged)
	}
	n.log.wait(t, "new_connection", func(m map[string]any) bool { return m["event"] == "new_connection" })
	if _, err := g.ResumeCampaign(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	checkSwitched(t, n, img)
	s := n.receiverStats(t)
	if want := staged.Chunks - staged.Have; s.StockRequests != want || s.DuplicateChunk != 0 {
		t.Fatalf("after resuming with %d of %d chunks: %d requests and %d duplicate chunks, want %d and 0",
			staged.Have, staged.Chunks, s.StockRequests, s.DuplicateChunk, want)
	}
}

// hookCommand is a --on-switch/--on-rollback command that runs this test
// binary as TestHookHelperProcess, recording its call in out.
func hookCommand(out string, fail bool) []string {
	argv := []string{os.Args[0], "-test.run=^TestHookHelperProcess$", "--", out}
	if fail {
		argv = append(argv, "fail")
	}
	return argv
}

// hookCall is what TestHookHelperProcess records.
type hookCall struct {
	Action   string `json:"action"`
	Slot     string `json:"slot"`
	SlotPath string `json:"slot_path"`
	Arg      string `json:"arg"`      // the path appended to the command, if any
	FileMD5  string `json:"file_md5"` // md5 of that file
	EnvMD5   string `json:"env_md5"`
}

// TestHookHelperProcess is not a test: it is the hook command of the tests
// here, run as a child process.
func TestHookHelperProcess(t *testing.T) {
	args := flag.Args()
	action := os.Getenv("MESHFLEET_OTA_ACTION")
	if len(args) == 0 || action == "" {
		return
	}
	call := hookCall{Action: action, Slot: os.Getenv("MESHFLEET_SLOT"), SlotPath: os.Getenv("MESHFLEET_SLOT_PATH"),
		EnvMD5: os.Getenv("MESHFLEET_IMAGE_MD5")}
	fail := false
	for _, a := range args[1:] {
		if a == "fail" {
			fail = true
			continue
		}
		call.Arg = a
		if data, err := os.ReadFile(a); err == nil {
			call.FileMD5 = md5hex(data)
		}
	}
	line, _ := json.Marshal(call)
	f, err := os.OpenFile(args[0], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		os.Exit(2)
	}
	f.Write(append(line, '\n'))
	f.Close()
	if fail {
		fmt.Fprintln(os.Stderr, "install failed: disk full")
		os.Exit(3)
	}
	os.Exit(0)
}

func readHookCalls(t *testing.T, path string) []hookCall {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var calls []hookCall
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		var c hookCall
		if err := json.Unmarshal(l, &c); err != nil {
			t.Fatalf("hook record %q: %v", l, err)
		}
		calls = append(calls, c)
	}
	return calls
}

// A switched image that cannot join the mesh before its confirm deadline
// rolls back, and the event and the slot store say so; --on-switch saw the
// new image's slot file and --on-rollback ran for the restored factory
// image.
func TestNodeOTARollsBackWithoutJoining(t *testing.T) {
	t.Parallel()
	hooks := filepath.Join(t.TempDir(), "hooks.jsonl")
	n := newOTANode(t, 301, linuxnode.Config{OnSwitch: hookCommand(hooks, false), OnRollback: hookCommand(hooks, false), Insecure: true})
	g := startGateway(t, n)
	img := testImage(11, 64<<10)
	sum := md5hex(img)
	startCampaign(t, g, img, "4.0.0", "stock", "none", n)
	sl := checkSwitched(t, n, img)
	h := n.log.wait(t, "on-switch hook", func(m map[string]any) bool { return m["event"] == "ota_hook" })
	if h["action"] != linuxnode.ActionSwitch || h["exit_code"] != 0.0 || h["error"] != nil {
		t.Fatalf("on-switch hook line %v, want a successful switch", h)
	}
	calls := readHookCalls(t, hooks)
	if len(calls) != 1 || calls[0].Action != "switch" || calls[0].Slot != string(sl) || calls[0].Arg == "" ||
		calls[0].Arg != calls[0].SlotPath || calls[0].FileMD5 != sum || calls[0].EnvMD5 != sum {
		t.Fatalf("on-switch calls %+v, want one with slot %s holding %s", calls, sl, sum)
	}

	// Restart where the gateway cannot reach it, with a deadline that
	// passes before anything could be joined.
	n = n.restart(t, func(c *nodeConfig) {
		c.Listen = "127.0.0.1:0"
		c.Device.ConfirmTimeout = 300 * time.Millisecond
	})
	n.log.wait(t, "trial", otaLine(linuxnode.StateTrial, sum))
	rb := n.log.wait(t, "rolled_back", otaLine(string(ota.StateRolledBack), sum))
	if r, _ := rb["reason"].(string); !strings.Contains(r, "confirm") || rb["slot"] != string(sl.Other()) {
		t.Fatalf("rolled_back line %v, want a confirm deadline reason and slot %s", rb, sl.Other())
	}
	st := n.dev.Store().State()
	if st.Pending != "" || st.Active != sl.Other() || st.Slot(sl).Status != slot.Bad || st.Last.State != slot.RolledBack || st.Last.Image.MD5 != sum {
		t.Fatalf("slot state after the rollback %+v, want %s active and %s bad", st, sl.Other(), sl)
	}
	h = n.log.wait(t, "on-rollback hook", func(m map[string]any) bool { return m["event"] == "ota_hook" })
	if h["action"] != linuxnode.ActionRollback || h["exit_code"] != 0.0 {
		t.Fatalf("on-rollback hook line %v", h)
	}
	calls = readHookCalls(t, hooks)
	if len(calls) != 2 || calls[1].Action != "rollback" || calls[1].Slot != string(sl.Other()) || calls[1].Arg != "" {
		t.Fatalf("hook calls %+v, want a rollback to the factory slot %s, which has no file", calls, sl.Other())
	}
}

// A failing --on-switch command is reported, the switch is abandoned (the
// new image was not installed), the distributor learns of the rollback,
// and with --exit-on-slot-change the node exits for its supervisor.
func TestNodeOTAFailedSwitchCommand(t *testing.T) {
	t.Parallel()
	hooks := filepath.Join(t.TempDir(), "hooks.jsonl")
	first := newOTANode(t, 401, linuxnode.Config{})
	first.stop(t)
	cfg := first.cfg
	cfg.Device.OnSwitch = hookCommand(hooks, true)
	cfg.Device.Insecure = true
	cfg.Device.OnRollback = hookCommand(hooks, false)
	n := startNode(t, cfg, true)
	g := startGateway(t, n)
	img := testImage(13, 32<<10)
	sum := md5hex(img)
	c := startCampaign(t, g, img, "5.0.0", "pipelined", "deflate", n)
	sl := checkSwitched(t, n, img)
	h := n.log.wait(t, "on-switch hook", func(m map[string]any) bool { return m["event"] == "ota_hook" })
	if out, _ := h["output"].(string); h["action"] != linuxnode.ActionSwitch || h["exit_code"] != 3.0 || h["error"] == nil || !strings.Contains(out, "disk full") {
		t.Fatalf("on-switch hook line %v, want exit code 3 and its output", h)
	}
	rb := n.log.wait(t, "rolled_back", otaLine(string(ota.StateRolledBack), sum))
	if r, _ := rb["reason"].(string); !strings.Contains(r, "on-switch command failed") {
		t.Fatalf("rolled_back line %v, want the failed command as reason", rb)
	}
	n.log.wait(t, "on-rollback hook", func(m map[string]any) bool {
		return m["event"] == "ota_hook" && m["action"] == linuxnode.ActionRollback
	})
	n.waitExit(t) // --exit-on-slot-change
	st := n.dev.Store().State()
	if st.Pending != "" || st.Active != sl.Other() || st.Slot(sl).Status != slot.Bad {
		t.Fatalf("slot state %+v, want the switch to %s abandoned", st, sl)
	}
	if calls := readHookCalls(t, hooks); len(calls) != 2 || calls[0].FileMD5 != sum || calls[1].Action != "rollback" {
		t.Fatalf("hook calls %+v", calls)
	}
	// Back up, the node tells the distributor; it does not fetch the
	// image again.
	n = startNode(t, cfg, false)
	n.log.wait(t, "idle start", otaLine(linuxnode.StateIdle, ""))
	done := waitCampaign(t, g, c.ID, "failed")
	if p := done.Nodes["401"]; p.State != string(ota.StateRolledBack) {
		t.Fatalf("campaign node progress %+v, want rolled_back", p)
	}
	// The offer that carried the report did not start a download.
	var state ota.State
	var downloading bool
	if err := n.d.Do(context.Background(), func(time.Time, *mesh.Node) {
		state = n.dev.Receiver().State()
		_, _, _, downloading = n.dev.Receiver().Downloading()
	}); err != nil {
		t.Fatal(err)
	}
	if state != ota.StateRolledBack || downloading {
		t.Fatalf("receiver %s (downloading %v) after reporting the rollback, want rolled_back and idle", state, downloading)
	}
}

// With --ota-public-key the node installs only images signed with the
// key: an unsigned image fails verification and is not switched to, a
// signed one is. The flags go through the command's own parsing.
func TestNodeOTAPublicKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	keyFile := filepath.Join(dir, "ota.pub")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(priv.Public().(ed25519.PublicKey))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var flags otaFlags
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	flags.register(fs)
	if err := fs.Parse([]string{"--slot-dir", filepath.Join(dir, "slots"), "--ota-role", otaRole, "--ota-hardware", otaHardware,
		"--ota-public-key", keyFile, "--status-interval", "0", "--on-switch", "/bin/true  --quiet"}); err != nil {
		t.Fatal(err)
	}
	dev, err := flags.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	if !dev.PublicKey.Equal(priv.Public()) || dev.StatusInterval != 0 || fmt.Sprint(dev.OnSwitch) != "[/bin/true --quiet]" || !dev.PeerToPeer {
		t.Fatalf("config from flags %+v", dev)
	}
	dev.OnSwitch = nil
	n := startNode(t, nodeConfig{ID: 501, Listen: "127.0.0.1:0", Device: dev}, false)
	if len(n.dev.Plugins()) != 1 {
		t.Fatalf("--status-interval 0: %d plugins, want only the receiver", len(n.dev.Plugins()))
	}
	fwDir := filepath.Join(dir, "firmware")
	g := startGatewayWith(t, func(c *gateway.Config) { c.Firmware.Dir = fwDir }, &testNode{cfg: nodeConfig{Listen: n.d.Addr().String()}, log: n.log})

	unsigned := testImage(21, 16<<10)
	startCampaign(t, g, unsigned, "6.0.0", "pipelined", "deflate", n)
	f := n.log.wait(t, "refused", otaLine(string(ota.StateRefused), md5hex(unsigned)))
	if r, _ := f["reason"].(string); !strings.Contains(r, "not signed") {
		t.Fatalf("refused line %v, want the missing signature as reason", f)
	}
	if st := n.dev.Store().State(); st.Pending != "" || st.Active != slot.A {
		t.Fatalf("slot state after an unsigned image %+v, want nothing switched", st)
	}

	signed := testImage(22, 16<<10)
	store, err := firmware.Open(fwDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := store.Add(context.Background(), bytes.NewReader(signed), firmware.Meta{Role: otaRole, Hardware: otaHardware, Version: "6.1.0"},
		firmware.AddOptions{SigningKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.StartCampaign(context.Background(), fleet.CampaignRequest{Image: fi.ID, Mode: "broadcast", Compress: "deflate", Nodes: []uint32{501}}); err != nil {
		t.Fatal(err)
	}
	checkSwitched(t, n, signed)
}

// A node that runs an --on-switch command and has no public key refuses
// unsigned images: the reason reaches the distributor, the campaign ends
// failed (a refusal is final for the image) and the command does not run.
// With --ota-insecure the same image installs with the next campaign.
func TestNodeOTAOnSwitchRefusesUnsignedWithoutKey(t *testing.T) {
	t.Parallel()
	hooks := filepath.Join(t.TempDir(), "hooks.jsonl")
	n := newOTANode(t, 601, linuxnode.Config{OnSwitch: hookCommand(hooks, false)})
	g := startGateway(t, n)
	img := testImage(31, 16<<10)
	c := startCampaign(t, g, img, "7.0.0", "pipelined", "deflate", n)
	f := n.log.wait(t, "refused", otaLine(string(ota.StateRefused), md5hex(img)))
	if r, _ := f["reason"].(string); !strings.Contains(r, "no public key") {
		t.Fatalf("refused line %v, want the missing key as reason", f)
	}
	last := waitCampaign(t, g, c.ID, "failed")
	if p := last.Nodes["601"]; p.State != string(ota.StateRefused) || !strings.Contains(p.Error, "no public key") ||
		last.Reason != "1 of 1 nodes refused the image" || last.Failed != 1 {
		t.Fatalf("campaign after the refusal: %+v", last)
	}
	if st := n.dev.Store().State(); st.Pending != "" || st.B.Status != slot.Empty {
		t.Fatalf("slot state after refusing %+v, want nothing staged or switched", st)
	}
	if _, err := os.Stat(hooks); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("--on-switch ran for a refused image: %v", readHookCalls(t, hooks))
	}
	if s := n.receiverStats(t); s.Refused == 0 {
		t.Fatalf("receiver stats %+v, want the offer refused", s)
	}

	// With --ota-insecure the node takes the image when it is offered again.
	n = n.restart(t, func(c *nodeConfig) { c.Device.Insecure = true })
	if _, err := g.StartCampaign(context.Background(), fleet.CampaignRequest{Image: last.Image.ID, Mode: "pipelined", Compress: "deflate", Nodes: []uint32{601}}); err != nil {
		t.Fatal(err)
	}
	checkSwitched(t, n, img)
	n.log.wait(t, "on-switch hook", func(m map[string]any) bool { return m["event"] == "ota_hook" })
	if calls := readHookCalls(t, hooks); len(calls) != 1 || calls[0].FileMD5 != md5hex(img) {
		t.Fatalf("--on-switch calls %+v, want one for the image installed with --ota-insecure", calls)
	}
}

func TestNodeOTAFlagErrors(t *testing.T) {
	dir := t.TempDir()
	base := []string{"node", "--id", "7", "--listen", "127.0.0.1:0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ota-role", "box"}, "--ota-role needs --slot-dir"},
		{[]string{"--on-switch", "install"}, "--on-switch needs --slot-dir"},
		{[]string{"--ota-insecure"}, "--ota-insecure needs --slot-dir"},
		{[]string{"--ota-peer-to-peer=false"}, "--ota-peer-to-peer needs --slot-dir"},
		{[]string{"--slot-dir", dir}, "needs --ota-role"},
		{[]string{"--slot-dir", dir, "--ota-role", "box", "--ota-hardware", ""}, "needs --ota-role and a non-empty --ota-hardware"},
		{[]string{"--slot-dir", dir, "--ota-role", "box", "--confirm-timeout", "0s"}, "must be positive"},
		{[]string{"--slot-dir", dir, "--ota-role", "box", "--ota-public-key", filepath.Join(dir, "missing.pub")}, "--ota-public-key"},
		{[]string{"--status-interval", "-1s"}, "must not be negative"},
		{[]string{"--status-max-interval", "10s"}, "want whole seconds above --status-interval"},
		{[]string{"--status-interval", "5s", "--status-max-interval", "7500ms"}, "want whole seconds above --status-interval"},
		{[]string{"--status-interval", "0", "--status-aggregate"}, "need the status reporter"},
		{[]string{"--slot-dir", dir, "--ota-role", "my_sensor"}, `--ota-role: role "my_sensor" contains "_"`},
	} {
		_, _, err := execute(t, context.Background(), strings.NewReader(""), append(base, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		t.Error("a rejected command line created a slot store")
	}
}
