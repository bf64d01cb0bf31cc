package linuxnode

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
	"github.com/meshfleet/meshfleet/status"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// stagePending leaves a verified image pending in a slot store in dir, as
// a completed switch by a previous run of the node does.
func stagePending(t *testing.T, dir string, img []byte) string {
	t.Helper()
	sum := stageSwitch(t, dir, img)
	d := &Device{cfg: Config{SlotDir: dir}}
	if err := d.markInstalled(slot.B, slot.Info{MD5: sum}, t0); err != nil {
		t.Fatal(err)
	}
	return sum
}

// stageSwitch switches a slot store in dir to img without recording its
// installation, as a run of the node stopped during --on-switch leaves it.
func stageSwitch(t *testing.T, dir string, img []byte) string {
	t.Helper()
	st, err := slot.OpenDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(img)
	md5hex := hex.EncodeToString(sum[:])
	d, err := st.Begin(slot.Transfer{Image: md5hex, ImageSize: int64(len(img)), Method: slot.MethodNone,
		TransferSize: int64(len(img)), ChunkSize: len(img), Chunks: 1, Version: "9.9.9", Role: "box", Hardware: "hw"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteChunk(0, img); err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(d, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return md5hex
}

// start opens a device at now and runs it in a fresh node, returning the
// events of the start.
func start(t *testing.T, cfg Config, now time.Time) (*Device, *mesh.Node, []mesh.Event) {
	t.Helper()
	dev, err := Open(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	n := mesh.New(mesh.Config{ID: 77}, now)
	for _, p := range dev.Plugins() {
		n.Use(p)
	}
	return dev, n, n.Ready().Events
}

// ready is what the node wants done, with the store work it asks for
// done as a driver does it: off the step, answered with WorkDone.
func ready(n *mesh.Node, now time.Time) []mesh.Event {
	var evs []mesh.Event
	for {
		rd := n.Ready()
		evs = append(evs, rd.Events...)
		if len(rd.Work) == 0 {
			return evs
		}
		for _, w := range rd.Work {
			n.WorkDone(now, w, w.Do())
		}
	}
}

func otaEvents(evs []mesh.Event) []OTAEvent {
	var out []OTAEvent
	for _, e := range evs {
		if o, ok := e.(OTAEvent); ok {
			out = append(out, o)
		}
	}
	return out
}

func restartRequested(d *Device) bool {
	select {
	case <-d.RestartRequested():
		return true
	default:
		return false
	}
}

func otaConfig(dir string) Config {
	return Config{Role: "box", Hardware: "hw", SlotDir: dir, ConfirmTimeout: time.Minute, MaxBoots: 2}
}

func TestStartReportsTheRunningImage(t *testing.T) {
	dir := t.TempDir()
	cfg := otaConfig(dir)
	cfg.StatusInterval = time.Second
	cfg.Version = "factory-7"
	dev, n, evs := start(t, cfg, t0)
	got := otaEvents(evs)
	if len(got) != 1 || got[0].State != StateIdle || got[0].Node != 77 || got[0].Slot != "A" || got[0].SlotPath != "" || got[0].MD5 != "" {
		t.Fatalf("start events %+v, want idle on the factory slot A without a file", got)
	}
	m := dev.Reporter().Snapshot(t0)
	if m.FirmwareVersion != "factory-7" || m.FirmwareMD5 != "" || m.OTAState != status.OTAIdle {
		t.Fatalf("reported %+v, want the configured version for the factory image", m)
	}
	if m.Role != "box" || m.Hardware != "hw" {
		t.Fatalf("reported role %q hardware %q, want the configured box, hw", m.Role, m.Hardware)
	}
	if restartRequested(dev) || len(n.Ready().Events) != 0 {
		t.Fatal("a normal start asked for a restart or emitted more")
	}
}

// Every start of a pending image counts; after MaxBoots starts without a
// confirmation the next one rolls back, and says so.
func TestBootLimitRollsBack(t *testing.T) {
	dir := t.TempDir()
	sum := stagePending(t, dir, []byte("the new image, never confirmed"))
	for boot := 1; boot <= 2; boot++ {
		dev, _, evs := start(t, otaConfig(dir), t0.Add(time.Duration(boot)*time.Second))
		got := otaEvents(evs)
		if len(got) != 1 || got[0].State != StateTrial || got[0].MD5 != sum || got[0].Version != "9.9.9" || got[0].Slot != "B" ||
			!got[0].Deadline.Equal(t0.Add(time.Second+time.Minute)) || !strings.HasSuffix(got[0].SlotPath, "slot-b.bin") {
			t.Fatalf("start %d: events %+v, want a trial of %s in slot B until the first start's deadline", boot, got, sum)
		}
		if err := dev.Close(); err != nil {
			t.Fatal(err)
		}
	}
	dev, _, evs := start(t, otaConfig(dir), t0.Add(3*time.Second))
	got := otaEvents(evs)
	if len(got) != 1 || got[0].State != string(ota.StateRolledBack) || got[0].MD5 != sum || got[0].Slot != "A" ||
		!strings.Contains(got[0].Reason, "2 boots") {
		t.Fatalf("third start: events %+v, want a rollback of %s after 2 boots", got, sum)
	}
	st := dev.Store().State()
	if st.Pending != "" || st.Active != slot.A || st.B.Status != slot.Bad {
		t.Fatalf("slot state %+v, want A active and B bad", st)
	}
	if !restartRequested(dev) {
		t.Fatal("no restart requested after the rollback (no --on-rollback command)")
	}
	if s := dev.Receiver().State(); s != ota.StateRolledBack {
		t.Fatalf("receiver state %s, want rolled_back for the distributor", s)
	}
}

// The first node sync of a trial image confirms it.
func TestTrialConfirmsAtFirstSync(t *testing.T) {
	dir := t.TempDir()
	sum := stagePending(t, dir, []byte("the new image"))
	cfg := otaConfig(dir)
	cfg.StatusInterval = time.Second
	dev, n, _ := start(t, cfg, t0)
	if m := dev.Reporter().Snapshot(t0); m.FirmwareMD5 != sum || m.FirmwareVersion != "9.9.9" || m.OTAState != status.OTASwitching {
		t.Fatalf("trial reports %+v, want the new image, switching", m)
	}
	n.Tick(t0.Add(10 * time.Second))
	if got := otaEvents(ready(n, t0.Add(10*time.Second))); len(got) != 0 {
		t.Fatalf("events before joining: %+v", got)
	}
	n.Emit(mesh.NewConnection{Conn: 1, NodeID: 5})
	// The store confirms off the step; the image is confirmed on its answer.
	rd := n.Ready()
	if got := otaEvents(rd.Events); len(got) != 0 || len(rd.Work) != 1 {
		t.Fatalf("at the first sync: events %+v and %d store works, want none and the confirm", got, len(rd.Work))
	}
	if st := dev.Store().State(); st.Pending == "" {
		t.Fatalf("slot state %+v: confirmed inside the node's step", st)
	}
	n.WorkDone(t0.Add(10*time.Second), rd.Work[0], rd.Work[0].Do())
	got := otaEvents(ready(n, t0.Add(10*time.Second)))
	if len(got) != 1 || got[0].State != string(ota.StateConfirmed) || got[0].MD5 != sum || got[0].Slot != "B" {
		t.Fatalf("events after the first sync: %+v, want %s confirmed in slot B", got, sum)
	}
	st := dev.Store().State()
	if st.Active != slot.B || st.Pending != "" || st.Last.State != slot.Confirmed {
		t.Fatalf("slot state %+v, want B confirmed", st)
	}
	n.Emit(mesh.NewConnection{Conn: 2, NodeID: 6})
	if got := otaEvents(ready(n, t0.Add(10*time.Second))); len(got) != 0 || restartRequested(dev) {
		t.Fatalf("a second sync did more: %+v", got)
	}
	if m := dev.Reporter().Snapshot(t0); m.OTAState != status.OTAConfirmed || m.OTAProgress != 100 {
		t.Fatalf("after confirming reports %+v", m)
	}
}

// A trial image that never joins rolls back at its deadline.
func TestTrialRollsBackAtDeadline(t *testing.T) {
	dir := t.TempDir()
	sum := stagePending(t, dir, []byte("the new image, isolated"))
	dev, n, _ := start(t, otaConfig(dir), t0)
	if dl := n.NextDeadline(); !dl.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next deadline %v, want the confirm deadline %v", dl, t0.Add(time.Minute))
	}
	n.Tick(t0.Add(time.Minute - time.Millisecond))
	if got := otaEvents(ready(n, t0.Add(time.Minute-time.Millisecond))); len(got) != 0 || restartRequested(dev) {
		t.Fatalf("before the deadline: %+v", got)
	}
	n.Tick(t0.Add(time.Minute))
	got := otaEvents(ready(n, t0.Add(time.Minute)))
	if len(got) != 1 || got[0].State != string(ota.StateRolledBack) || got[0].MD5 != sum || got[0].Slot != "A" ||
		!strings.Contains(got[0].Reason, "confirm") {
		t.Fatalf("events at the deadline: %+v, want %s rolled back to A", got, sum)
	}
	if st := dev.Store().State(); st.Pending != "" || st.B.Status != slot.Bad || st.Last.State != slot.RolledBack || !strings.Contains(st.Last.Reason, "deadline") {
		t.Fatalf("slot state %+v", st)
	}
	if !restartRequested(dev) {
		t.Fatal("no restart requested after the rollback")
	}
	// A late sync no longer confirms anything.
	n.Emit(mesh.NewConnection{Conn: 1, NodeID: 5})
	if st := dev.Store().State(); st.Active != slot.A {
		t.Fatalf("a sync after the rollback changed the slots: %+v", st)
	}
}

// loopDriver runs Do on a node directly, as the tcp driver's loop would.
type loopDriver struct {
	mu  sync.Mutex
	n   *mesh.Node
	now time.Time
	evs []mesh.Event
}

func (d *loopDriver) Do(_ context.Context, fn func(time.Time, *mesh.Node)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d.now, d.n)
	d.evs = append(d.evs, d.n.Ready().Events...)
	return nil
}

func (d *loopDriver) hookEvents() []HookEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []HookEvent
	for _, e := range d.evs {
		if h, ok := e.(HookEvent); ok {
			out = append(out, h)
		}
	}
	return out
}

// runUntilRestart runs the device's hooks until it asks for a restart.
func runUntilRestart(t *testing.T, dev *Device, drv Driver) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		dev.Run(ctx, drv)
	}()
	select {
	case <-dev.RestartRequested():
	case <-time.After(20 * time.Second):
		t.Fatal("no restart requested")
	}
	cancel()
	<-done
}

// The rollback command runs with the restored slot's details, and its
// failure (here: its time limit) is reported, not fatal.
func TestRollbackCommandTimesOut(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	dir := t.TempDir()
	stagePending(t, dir, []byte("bad image"))
	cfg := otaConfig(dir)
	cfg.MaxBoots = 0 // default: 3
	cfg.OnRollback = []string{sleep, "30"}
	cfg.HookTimeout = 100 * time.Millisecond
	for range 3 {
		d, _, _ := start(t, cfg, t0)
		d.Close()
	}
	dev, n, evs := start(t, cfg, t0)
	if got := otaEvents(evs); len(got) != 1 || got[0].State != string(ota.StateRolledBack) {
		t.Fatalf("fourth start: %+v, want a rollback", got)
	}
	if restartRequested(dev) {
		t.Fatal("restart requested before the rollback command ran")
	}
	drv := &loopDriver{n: n, now: t0}
	runUntilRestart(t, dev, drv)
	hs := drv.hookEvents()
	if len(hs) != 1 || hs[0].Action != ActionRollback || hs[0].MD5 != "" || hs[0].SlotPath != "" ||
		!strings.Contains(hs[0].Error, "timed out") || len(hs[0].Command) != 2 {
		t.Fatalf("hook events %+v, want the timed-out rollback command to the factory slot", hs)
	}
}

// A switched image whose installation did not complete (the node stopped
// while --on-switch ran) must not run on trial: the old program would
// confirm it. It rolls back at the next start.
func TestUninstalledSwitchRollsBack(t *testing.T) {
	dir := t.TempDir()
	sum := stageSwitch(t, dir, []byte("never installed"))
	dev, _, evs := start(t, otaConfig(dir), t0)
	got := otaEvents(evs)
	if len(got) != 1 || got[0].State != string(ota.StateRolledBack) || got[0].MD5 != sum || !strings.Contains(got[0].Reason, "did not complete") {
		t.Fatalf("start events %+v, want %s rolled back as not installed", got, sum)
	}
	if st := dev.Store().State(); st.Pending != "" || st.Active != slot.A || st.B.Status != slot.Bad {
		t.Fatalf("slot state %+v", st)
	}
	// A record of another image does not count either.
	dir = t.TempDir()
	stageSwitch(t, dir, []byte("never installed either"))
	d := &Device{cfg: Config{SlotDir: dir}}
	if err := d.markInstalled(slot.B, slot.Info{MD5: sum}, t0); err != nil {
		t.Fatal(err)
	}
	_, _, evs = start(t, otaConfig(dir), t0)
	if got := otaEvents(evs); len(got) != 1 || got[0].State != string(ota.StateRolledBack) {
		t.Fatalf("with another image's record: %+v, want a rollback", got)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []Config{
		{Role: "box"},
		{OnSwitch: []string{"true"}},
		{SlotDir: dir, Role: "box"},
		{SlotDir: dir, Hardware: "hw"},
		{SlotDir: dir, Role: "box", Hardware: "hw", PublicKey: make([]byte, 31)},
		{SlotDir: dir, Role: "box", Hardware: "hw", ConfirmTimeout: -1},
		{SlotDir: dir, Role: "box", Hardware: "hw", OnRollback: []string{""}},
	} {
		if _, err := Open(c, t0); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: error %v, want ErrConfig", c, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		t.Error("a rejected config created a slot store")
	}
	// A broken slot store is an error, not a fresh store.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{SlotDir: bad, Role: "box", Hardware: "hw"}, t0); !errors.Is(err, slot.ErrCorrupt) {
		t.Errorf("corrupt slot store: error %v, want slot.ErrCorrupt", err)
	}
}

func TestStatusOnly(t *testing.T) {
	dev, _, evs := start(t, Config{StatusInterval: time.Second, Version: "v1"}, t0)
	if len(dev.Plugins()) != 1 || dev.Receiver() != nil || dev.Store() != nil || len(evs) != 0 {
		t.Fatalf("status-only device: %d plugins, receiver %v", len(dev.Plugins()), dev.Receiver())
	}
	if m := dev.Reporter().Snapshot(t0); m.FirmwareVersion != "v1" || m.OTAState != status.OTAIdle {
		t.Fatalf("reports %+v", m)
	}
	agg, _, _ := start(t, Config{StatusInterval: time.Second, StatusMaxInterval: 30 * time.Second, StatusAggregate: true, Version: "v1"}, t0)
	if ps := agg.Plugins(); len(ps) != 2 {
		t.Fatalf("aggregating device: %d plugins", len(ps))
	} else if _, ok := ps[0].(*status.Aggregator); !ok {
		t.Fatalf("aggregating device's first plugin is %T", ps[0])
	}
	off, _, _ := start(t, Config{}, t0)
	if len(off.Plugins()) != 0 {
		t.Fatal("the zero config runs plugins")
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	tl := &tail{limit: 8}
	tl.Write([]byte("0123456"))
	tl.Write([]byte("789abc"))
	if got := tl.String(); got != "56789abc" {
		t.Fatalf("tail %q, want the last 8 bytes", got)
	}
}
