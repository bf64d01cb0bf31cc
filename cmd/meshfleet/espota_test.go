package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// `meshfleet ota push --mode pipelined --compress none` delivers an image
// to two C++ nodes running the ESP library's OTA receiver (MeshFleetOTA,
// first layer), one behind a C++ relay: each takes the Offer, asks for
// chunks a window at a time, writes them in order, checks the MD5 before
// the switch and reports confirmed, so the push ends by itself.
func TestOTAPushPipelinedToESPLibraryReceivers(t *testing.T) {
	pushToESPLibrary(t, "pipelined", "none", "ESP8266", nil)
}

// With `--compress heatshrink` the receivers decompress the chunks as they
// come (window 11, lookahead 4) straight into the writer and check the
// MD5 of the decompressed image.
func TestOTAPushPipelinedHeatshrinkToESPLibraryReceivers(t *testing.T) {
	pushToESPLibrary(t, "pipelined", "heatshrink", "ESP8266", nil)
}

// pushToESPLibrary pushes an image to two ESP-library receivers, 221 next
// to the distributor and 222 behind a C++ relay; each hides the first
// pushed copy of the chunks in drop that comes while its receiver
// downloads. It returns the
// chunks the receivers found dropped.
func pushToESPLibrary(t *testing.T, mode, method, hardware string, drop []int) (dropped []cpppeer.Event) {
	cpppeer.BuildFleetNode(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, img := writeImage(t, 100_000)
	addr := freeLoopbackAddr(t)

	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", hardware, "--mode", mode,
			"--compress", method, "--listen", addr, "--nodes", "221", "--nodes", "222", "--timeout", "50s")
		pushed <- err
	}()
	const running = "00000000000000000000000000000000"
	images := []string{filepath.Join(t.TempDir(), "image.bin"), filepath.Join(t.TempDir(), "image.bin")}
	direct := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 221, Connect: addr, MD5: running, Image: images[0], Hardware: hardware, DropPushed: drop})
	relay := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 220, Connect: addr, Listen: true})
	behind := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 222, Connect: relay.Addr(), MD5: running, Image: images[1], Hardware: hardware, DropPushed: drop})
	start := time.Now()
	var err error
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end")
	}
	if err != nil {
		t.Fatalf("push: %v\n%s\nnode 221: %s\nnode 222: %s", err, out, direct.Tail(), behind.Tail())
	}
	budget, err := direct.WaitEvent(ctx, "ota_budget")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the OTA receiver's state on the host (64-bit), %s %s: %d bytes (sizeof(MeshFleetOTA)) + %d bytes of inflater", hardware, method, budget.Bytes, budget.Inflater)
	for _, rx := range []*cpppeer.Peer{direct, behind} {
		ev, err := rx.WaitEvent(ctx, "md5")
		if err != nil || !ev.OK {
			t.Fatalf("C++ node %d: md5 %+v %v", rx.Config.ID, ev, err)
		}
	}
	for _, path := range images {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, img) {
			t.Fatalf("%s: not the image (%d bytes, %v)", path, len(got), err)
		}
	}
	if !strings.Contains(out, "221") || !strings.Contains(out, "222") {
		t.Errorf("push output does not name both nodes:\n%s", out)
	}
	t.Logf("%d-byte image to two ESP-library receivers (%s, %s): push ended after %.1f s", len(img), mode, method, time.Since(start).Seconds())
	for _, rx := range []*cpppeer.Peer{direct, behind} {
		// A verified node reboots only once the push is over for it: its
		// restart, which carries the lost count, may come after the push
		// command ended.
		if _, err := rx.WaitEvent(ctx, "restart"); err != nil {
			t.Fatalf("C++ node %d: no restart after its image: %v", rx.Config.ID, err)
		}
		hidden, lost := 0, -1
		for _, ev := range rx.Events() {
			switch ev.Event {
			case "dropped":
				dropped = append(dropped, ev)
				hidden++
			case "restart":
				lost = ev.Lost
			}
		}
		// A hidden chunk is one the receiver must have found missing
		// (the next pushed one shows the gap) and reported as lost; it
		// also counts chunks pushed before it took the Offer.
		if lost < hidden {
			t.Errorf("C++ node %d: %d pushed chunks hidden, %d found lost", rx.Config.ID, hidden, lost)
		}
	}
	return dropped
}

// `--mode broadcast --compress heatshrink`: the receivers take the pushed
// chunks in order, decompress them into the writer and ask the distributor
// for whatever a gap, the End or a silence leaves missing.
func TestOTAPushBroadcastHeatshrinkToESPLibraryReceivers(t *testing.T) {
	pushToESPLibrary(t, "broadcast", "heatshrink", "ESP8266", nil)
}

// Pushed chunks lost on the way (hidden from the receiver) leave a gap the
// receiver sees at the next pushed chunk; it asks the distributor for the
// rest and still writes exactly the image.
func TestOTAPushBroadcastHeatshrinkToESPLibraryReceiversWithLoss(t *testing.T) {
	dropped := pushToESPLibrary(t, "broadcast", "heatshrink", "ESP8266", []int{3, 4, 9})
	// The receiver that started the push saw it from chunk 0 on.
	if len(dropped) < 3 {
		t.Fatalf("%d pushed chunks hidden from the receivers (%+v), want at least 3: the loss path did not run", len(dropped), dropped)
	}
	t.Logf("%d pushed chunks lost on the way", len(dropped))
}

// `--compress deflate` to ESP32 receivers: each inflates the zlib stream as
// the chunks come, through the inflater interface (zlib on the host, the
// ROM's tinfl on the chip), straight into the writer.
func TestOTAPushPipelinedDeflateToESPLibraryReceivers(t *testing.T) {
	pushToESPLibrary(t, "pipelined", "deflate", "ESP32", nil)
}

func TestOTAPushBroadcastDeflateToESPLibraryReceivers(t *testing.T) {
	pushToESPLibrary(t, "broadcast", "deflate", "ESP32", nil)
}

// An ESP8266 has no inflater: it refuses a deflate Offer with the reason
// (a Report "refused"), which the distributor counts as final, so the
// push ends at once instead of waiting out its timeout.
func TestOTAPushDeflateToESP8266IsRefused(t *testing.T) {
	pushRefused(t, "broadcast", "deflate", cpppeer.FleetConfig{ID: 223}, "deflate")
}

// pushRefused pushes a 50 KB image in mode and method to one host node
// (cfg, without its connection and images), which must refuse it with a
// reason containing want before anything is written, and the push must end
// at once, failing with the node counted refused.
func pushRefused(t *testing.T, mode, method string, cfg cpppeer.FleetConfig, want string) {
	t.Helper()
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, _ := writeImage(t, 50_000)
	addr := freeLoopbackAddr(t)
	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", mode,
			"--compress", method, "--listen", addr, "--nodes", fmt.Sprint(cfg.ID), "--timeout", "50s")
		pushed <- err
	}()
	cfg.Connect, cfg.MD5, cfg.Image = addr, "00000000000000000000000000000000", filepath.Join(t.TempDir(), "image.bin")
	rx := cpppeer.StartFleetNode(ctx, t, cfg)
	ev, err := rx.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "ota_state" && e.State == "refused" })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Err, want) {
		t.Errorf("refusal reason %q, want it to say %q", ev.Err, want)
	}
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end after the refusal")
	}
	if err == nil || !strings.Contains(out, "1 refused") {
		t.Fatalf("push: %v, want it to fail with the node refused\n%s", err, out)
	}
	for _, e := range rx.Events() {
		if e.Event == "started" {
			t.Errorf("the refusing node began an update")
		}
	}
	t.Logf("refused: %s; push: %v", ev.Err, err)
}

// A receiver killed mid-transfer (a power cut: --exit-after-chunks) and
// started again with the same state directory and update partition asks
// the distributor for the Offer, takes the transfer up from its progress
// file and fetches only the chunks it does not hold: every chunk of the
// second run is one the first did not save (none came twice), and the
// image is exact. Compressed transfers resume their decoder too
// (heatshrink from its saved bits, deflate from a block boundary), with
// the window read back from the partition. In broadcast mode the push goes
// on without the node; back, it asks its path and the distributor only for
// what it lacks.
func TestOTAPushToESPLibraryReceiverResumesAfterKill(t *testing.T) {
	for _, tc := range []struct{ mode, method, hardware string }{
		{"pipelined", "none", "ESP8266"}, {"pipelined", "heatshrink", "ESP8266"}, {"pipelined", "deflate", "ESP32"},
		{"broadcast", "heatshrink", "ESP8266"},
	} {
		t.Run(tc.mode+"-"+tc.method, func(t *testing.T) { resumeAfterKill(t, tc.mode, tc.method, tc.hardware) })
	}
}

func resumeAfterKill(t *testing.T, mode, method, hardware string) {
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, img := writeImage(t, 400_000)
	addr := freeLoopbackAddr(t)
	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", hardware, "--mode", mode,
			"--compress", method, "--listen", addr, "--nodes", "224", "--timeout", "80s")
		pushed <- err
	}()
	image := filepath.Join(t.TempDir(), "image.bin")
	cfg := cpppeer.FleetConfig{ID: 224, Connect: addr, MD5: "00000000000000000000000000000000", Image: image,
		Hardware: hardware, State: t.TempDir(), ExitAfterChunks: 20}
	first := cpppeer.StartFleetNode(ctx, t, cfg)
	killed, err := first.WaitEvent(ctx, "killed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.WaitEvent(ctx, "exit"); err != nil {
		t.Fatal(err)
	}
	cfg.ExitAfterChunks = 0
	second := cpppeer.StartFleetNode(ctx, t, cfg)
	resumed, err := second.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "ota_state" && e.State == "resumed" })
	if err != nil {
		t.Fatal(err)
	}
	done, err := second.WaitEvent(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end")
	}
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(image); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("not the image (%d bytes, %v)", len(got), err)
	}
	t.Logf("%s %s: killed after %d of %d chunks; resumed with %d held; then took %d, %d came twice",
		mode, method, killed.Taken, killed.Of, resumed.Held, done.Taken, done.Dup)
	if resumed.Held == 0 || resumed.Held > killed.Taken {
		t.Errorf("resumed with %d chunks held after %d were taken", resumed.Held, killed.Taken)
	}
	if done.Resumed != resumed.Held || done.Taken != done.Of-done.Resumed || done.Dup != 0 {
		t.Errorf("second run took %d chunks (%d came although held) with %d resumed of %d: held chunks were fetched again",
			done.Taken, done.Dup, done.Resumed, done.Of)
	}
}

// Repairs hop by hop: in a chain distributor — A — B, both ESP-library
// receivers, B loses pushed chunks (hidden from it). B sees each gap at
// the next pushed chunk and asks its parent A first (Need, routing 0), as
// Go receivers do; A answers from the chunks it holds, read back from its
// update partition, so the distributor is not asked for them.
func TestOTAPushBroadcastESPLibraryParentRepairsChild(t *testing.T) {
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, img := writeImage(t, 600_000)
	addr := freeLoopbackAddr(t)
	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", "broadcast",
			"--compress", "none", "--listen", addr, "--nodes", "231", "--nodes", "232", "--timeout", "80s")
		pushed <- err
	}()
	// B joins a moment after A, whose Report starts the push: it asks
	// for the Offer at the first pushed chunk it sees (an empty Need),
	// well before the hidden chunks (of 147); what was pushed before it
	// took the Offer is repaired by A as well.
	const running = "00000000000000000000000000000000"
	images := []string{filepath.Join(t.TempDir(), "image.bin"), filepath.Join(t.TempDir(), "image.bin")}
	a := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 231, Connect: addr, Listen: true, MD5: running, Image: images[0]})
	b := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 232, Connect: a.Addr(), MD5: running, Image: images[1],
		DropPushed: []int{100, 101, 130}})
	var err error
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end")
	}
	if err != nil {
		t.Fatalf("push: %v\n%s\nA: %s\nB: %s", err, out, a.Tail(), b.Tail())
	}
	for _, path := range images {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, img) {
			t.Fatalf("%s: not the image (%d bytes, %v)", path, len(got), err)
		}
	}
	bDone, err := b.WaitEvent(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Command("stats"); err != nil {
		t.Fatal(err)
	}
	aStats, err := a.WaitEvent(ctx, "ota_stats")
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, e := range b.Events() {
		if e.Event == "dropped" {
			dropped++
		}
	}
	t.Logf("B: %d pushed chunks hidden, %d found lost, %d asked of A, %d repaired by A; A served %d",
		dropped, bDone.Lost, bDone.AskedParent, bDone.FromParent, aStats.Served)
	if dropped == 0 {
		t.Fatal("no pushed chunk was hidden from B: the loss path did not run")
	}
	if bDone.AskedParent < dropped || bDone.FromParent < dropped || aStats.Served < bDone.FromParent {
		t.Errorf("B lost %d pushed chunks, asked A for %d, got %d from it; A served %d: not repaired by the parent",
			dropped, bDone.AskedParent, bDone.FromParent, aStats.Served)
	}
}

// Hop by hop over two hops: distributor — A — B — C, the same pushed
// chunks hidden from B and C. C asks its parent B, which lacks them too:
// B holds C's ask, asks its own parent A, and passes each chunk on as it
// comes, so C is repaired without asking the distributor.
func TestOTAPushBroadcastESPLibraryRepairsTwoHops(t *testing.T) {
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, img := writeImage(t, 600_000)
	addr := freeLoopbackAddr(t)
	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", "broadcast",
			"--compress", "none", "--listen", addr, "--nodes", "241", "--nodes", "242", "--nodes", "243", "--timeout", "80s")
		pushed <- err
	}()
	const running = "00000000000000000000000000000000"
	dir := t.TempDir()
	images := []string{filepath.Join(dir, "a.bin"), filepath.Join(dir, "b.bin"), filepath.Join(dir, "c.bin")}
	a := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 241, Connect: addr, Listen: true, MD5: running, Image: images[0]})
	b := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 242, Connect: a.Addr(), Listen: true, MD5: running, Image: images[1],
		DropPushed: []int{120, 121}})
	c := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 243, Connect: b.Addr(), MD5: running, Image: images[2],
		DropPushed: []int{120, 121}})
	var err error
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end")
	}
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	for _, path := range images {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, img) {
			t.Fatalf("%s: not the image (%d bytes, %v)", path, len(got), err)
		}
	}
	stats := map[uint32]cpppeer.Event{}
	for _, n := range []*cpppeer.Peer{a, b, c} {
		if err := n.Command("stats"); err != nil {
			t.Fatal(err)
		}
		ev, err := n.WaitEvent(ctx, "ota_stats")
		if err != nil {
			t.Fatal(err)
		}
		stats[n.Config.ID] = ev
	}
	hidden := 0
	for _, e := range c.Events() {
		if e.Event == "dropped" {
			hidden++
		}
	}
	sa, sb, sc := stats[241], stats[242], stats[243]
	t.Logf("C: %d hidden, asked B for %d, got %d from B, asked the distributor for %d; B: asked A for %d, got %d, served %d; A served %d",
		hidden, sc.AskedParent, sc.FromParent, sc.Asked-sc.AskedParent-sc.AskedPath, sb.AskedParent, sb.FromParent, sb.Served, sa.Served)
	if hidden != 2 {
		t.Fatalf("%d pushed chunks hidden from C, want 2: C took the Offer after the push passed them", hidden)
	}
	if sc.FromParent < hidden || sb.Served < hidden || sb.FromParent < hidden || sa.Served < hidden {
		t.Errorf("not repaired hop by hop: C got %d from B, B served %d and got %d from A, A served %d (want at least %d each)",
			sc.FromParent, sb.Served, sb.FromParent, sa.Served, hidden)
	}
	if sc.Asked != sc.AskedParent {
		t.Errorf("C asked %d chunks, %d of them of B: it went past its parent", sc.Asked, sc.AskedParent)
	}
}

// An image larger than the update partition is refused before anything
// is written, with the reason.
func TestOTAPushTooLargeForESPLibraryPartitionIsRefused(t *testing.T) {
	pushRefused(t, "pipelined", "heatshrink", cpppeer.FleetConfig{ID: 225, MaxImage: 40_000}, "larger than the update partition")
}

// A campaign aborted while an ESP-library receiver downloads: its next
// "downloading" report is answered with a Refuse marked over, and the
// receiver drops the transfer (state idle) instead of asking for chunks
// for ever. The abort comes in the step that handles the receiver's first
// report, before any chunk is served.
func TestAbortedCampaignEndsESPLibraryDownload(t *testing.T) {
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, img := writeImage(t, 100_000)
	dist := ota.NewDistributor(ota.DistributorConfig{})
	abort := &abortOnReport{dist: dist, id: "c"}
	addr := freeLoopbackAddr(t)
	drv, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1, Root: true, ContainsRoot: true}, Listen: addr,
		Plugins: []mesh.Plugin{dist, abort}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- drv.Run(runCtx) }()
	defer func() { stop(); <-ran }()
	rx := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 225, Connect: addr, MD5: "00000000000000000000000000000000",
		Image: filepath.Join(t.TempDir(), "image.bin")})
	if _, err := rx.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "nodes" && e.Count == 2 }); err != nil {
		t.Fatal(err)
	}
	err = drv.Do(ctx, func(now time.Time, _ *mesh.Node) {
		_, err := dist.Start(now, ota.CampaignSpec{ID: "c", Image: ota.Image{Role: "sensor", Hardware: "ESP8266", Data: img},
			Mode: ota.ModePipelined, Method: "none", Nodes: []uint32{225}})
		if err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := rx.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "ota_state" && e.State == "idle" })
	if err != nil {
		t.Fatalf("%v\n%s", err, rx.Tail())
	}
	if !strings.Contains(ev.Err, "over") {
		t.Errorf("idle because %q, want the transfer over at its distributor", ev.Err)
	}
	if !abort.done {
		t.Error("the campaign was not aborted on the receiver's report")
	}
}

// abortOnReport aborts campaign id when the first Report for it comes in,
// after the distributor (added before it) handled that report.
type abortOnReport struct {
	dist *ota.Distributor
	id   string
	done bool
}

func (a *abortOnReport) Attach(mesh.Host) {}
func (a *abortOnReport) Types() []int     { return []int{ota.TypeReport} }
func (a *abortOnReport) HandlePackage(now time.Time, _ mesh.ConnID, _ protocol.Header, _ []byte) {
	if !a.done {
		a.done = a.dist.Abort(now, a.id) == nil
	}
}
func (a *abortOnReport) Tick(time.Time)              {}
func (a *abortOnReport) NextDeadline() (t time.Time) { return t }
