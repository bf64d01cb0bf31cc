package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/ota"
)

// `meshfleet ota push --mode stock-turbo --nodes` to two stock C++
// receivers, one behind a C++ relay, ends by itself with exit 0 and both
// nodes shown installed (estimated): with stock-turbo every stock node of
// the role takes the image, and --nodes names the nodes the push waits
// for. A receiver in broadcast mode sends nothing; its reboot after the
// last chunk went out is what shows it installed.
func TestOTAPushStockTurboToCppReceiversEnds(t *testing.T) {
	cpppeer.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, img := writeImage(t, 50_000)
	addr := freeLoopbackAddr(t)

	pushed := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", "stock-turbo",
			"--listen", addr, "--nodes", "221", "--nodes", "222", "--json", "--timeout", "40s")
		pushed <- err
	}()
	direct := cpppeer.Start(ctx, t, cpppeer.Config{ID: 221, Connect: addr, Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), Restart: "reboot", ProgressEvery: 50})
	relay := cpppeer.Start(ctx, t, cpppeer.Config{ID: 220, Connect: addr, Listen: true})
	behind := cpppeer.Start(ctx, t, cpppeer.Config{ID: 222, Connect: relay.Addr(), Role: "sensor", Image: filepath.Join(t.TempDir(), "image.bin"), Restart: "reboot", ProgressEvery: 50})
	start := time.Now()
	var err error
	select {
	case err = <-pushed:
	case <-ctx.Done():
		t.Fatal("push did not end")
	}
	if err != nil {
		for _, rx := range []*cpppeer.Peer{direct, behind} {
			t.Logf("C++ receiver %d: %s", rx.Config.ID, rx.Tail())
		}
		t.Fatalf("push: %v\n%s", err, out)
	}
	for _, rx := range []*cpppeer.Peer{direct, behind} {
		got, err := os.ReadFile(rx.Config.Image)
		if err != nil || !bytes.Equal(got, img) {
			t.Fatalf("C++ receiver %d: image not written (%v)", rx.Config.ID, err)
		}
	}
	installed := map[uint32]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev jsonEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not a JSON event: %q: %v", line, err)
		}
		if ev.Node != 0 && ev.NodeState == string(ota.StateInstalled) && ev.Estimated {
			installed[ev.Node] = true
		}
	}
	if !installed[221] || !installed[222] || len(installed) != 2 {
		t.Fatalf("nodes shown installed (estimated): %v, want 221 and 222\n%s", installed, out)
	}
	t.Logf("stock-turbo push to two C++ receivers ended after %.1f s", time.Since(start).Seconds())
}
