package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
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
	cpppeer.BuildFleetNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, _ := writeImage(t, 50_000)
	addr := freeLoopbackAddr(t)
	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", "broadcast",
			"--compress", "deflate", "--listen", addr, "--nodes", "223", "--timeout", "50s")
		pushed <- err
	}()
	image := filepath.Join(t.TempDir(), "image.bin")
	rx := cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: 223, Connect: addr, MD5: "00000000000000000000000000000000", Image: image})
	ev, err := rx.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "ota_state" && e.State == "refused" })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Err, "deflate") {
		t.Errorf("refusal reason %q does not name deflate", ev.Err)
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
