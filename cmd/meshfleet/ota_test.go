package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func writeImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	img := compress.FirmwareLike(size, 3)
	p := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, img
}

func TestOTAPushSimulated(t *testing.T) {
	p, _ := writeImage(t, 50_000)
	out, _, err := execute(t, context.Background(), nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP32", "--sim-nodes", "5", "--json")
	if err != nil {
		t.Fatal(err)
	}
	confirmed := map[float64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if ev["event"] == "progress" && ev["state"] == "confirmed" {
			confirmed[ev["node"].(float64)] = true
		}
	}
	if len(confirmed) != 5 {
		t.Fatalf("%d nodes confirmed, want 5:\n%s", len(confirmed), out)
	}
}

// One rule for roles: push refuses what firmware add refuses.
func TestOTAPushRefusesInvalidRole(t *testing.T) {
	p, _ := writeImage(t, 5_000)
	for _, role := range []string{"my_sensor", "sensor.v2", "two words"} {
		_, _, err := execute(t, context.Background(), nil, "ota", "push", p, "--role", role, "--hardware", "ESP32", "--sim-nodes", "2", "--timeout", "1m")
		if err == nil || !strings.Contains(err.Error(), "--role: role "+strconv.Quote(role)) {
			t.Errorf("push --role %q: error %v, want the role refused", role, err)
		}
	}
}

// A missing image file is reported as a missing file; an argument that
// could be either a file or an image id is reported as neither.
func TestOTAPushMissingImage(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ arg, want string }{
		{"fw.bin", "open fw.bin: no such file or directory"},
		{"build/fw.bin", "open build/fw.bin: no such file or directory"},
		{"sensor", "open sensor: no such file or directory"},
		{"abcdef012345", "open abcdef012345: no such file or directory, and the firmware store " + store + " has no image abcdef012345"},
	} {
		_, _, err := execute(t, context.Background(), nil, "ota", "push", c.arg, "--role", "sensor", "--hardware", "ESP32", "--sim-nodes", "2", "--store", store)
		if err == nil || err.Error() != c.want {
			t.Errorf("push %s: error %v, want %s", c.arg, err, c.want)
		}
	}
	_, _, err := execute(t, context.Background(), nil, "ota", "push", "abcdef012345", "--role", "sensor", "--hardware", "ESP32", "--sim-nodes", "2", "--store", "nostore")
	if want := "open abcdef012345: no such file or directory, and there is no firmware store nostore (--store) to find an image id in"; err == nil || err.Error() != want {
		t.Errorf("push with a missing store: error %v, want %s", err, want)
	}
	if _, err := os.Stat("nostore"); err == nil {
		t.Error("push created the missing store")
	}
}

// TestOTAPushTCP pushes over real loopback TCP to a Go receiver node.
func TestOTAPushTCP(t *testing.T) {
	p, img := writeImage(t, 30_000)
	store := ota.NewMemoryStore("")
	store.Decode = ota.Decode
	rc, err := ota.NewReceiver(ota.ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: store, SelfTest: func(string) bool { return true }}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	node, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 77}, Listen: "127.0.0.1:0", Plugins: []mesh.Plugin{rc}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	if node.Addr() == nil { // tcp.New binds the listener before returning
		t.Fatal("receiver node has no listen address")
	}
	out, _, err := execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP32", "--mode", "pipelined",
		"--connect", node.Addr().String(), "--nodes", "77", "--timeout", "50s")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "completed: 1 confirmed") {
		t.Fatalf("output:\n%s", out)
	}
	cancel()
	<-done
	if string(store.Image()) != string(img) {
		t.Fatal("receiver installed a different image")
	}
}

// The summary line counts every node, whatever its state.
func TestOTAPushSummaryCountsEveryState(t *testing.T) {
	var out strings.Builder
	v := newProgressView(&out, false)
	v.c, v.state = &ota.Campaign{ID: "c1"}, ota.CampaignRunning
	for id, st := range map[uint32]ota.State{1: ota.StateSwitching, 2: ota.StateRefused, 3: ota.StateConfirmed,
		4: ota.StateVerifying, 5: ota.StateIdle, 6: ota.StateDownloading, 7: ota.StateSwitching} {
		v.nodes[id] = ota.Progress{Node: id, State: st}
	}
	v.render()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := "campaign c1 running: 1 confirmed, 1 idle, 1 downloading, 1 verifying, 2 switching, 1 refused (7 nodes)"
	if got := lines[len(lines)-1]; got != want {
		t.Errorf("summary\n got: %s\nwant: %s", got, want)
	}
}

// Stock receivers never report: the push still ends, exit 0, with every
// node shown installed from what their requests told, marked estimated.
func TestOTAPushSimulatedStockReceivers(t *testing.T) {
	p, _ := writeImage(t, 30_000)
	out, _, err := execute(t, context.Background(), nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266",
		"--sim-nodes", "4", "--sim-receiver", "stock", "--mode", "stock", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	installed, downloading := map[float64]bool{}, map[float64]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if ev["event"] != "campaign" || ev["node"] == nil {
			continue
		}
		if ev["estimated"] != true {
			t.Errorf("stock node's figures not marked estimated: %s", line)
		}
		switch ev["node_state"] {
		case "installed":
			installed[ev["node"].(float64)] = true
		case "downloading":
			downloading[ev["node"].(float64)]++
		}
	}
	if len(installed) != 4 || len(downloading) != 4 {
		t.Fatalf("%d nodes installed, %d seen downloading, want 4 and 4:\n%s", len(installed), len(downloading), out)
	}
	out, _, err = execute(t, context.Background(), nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266",
		"--sim-nodes", "3", "--sim-receiver", "stock", "--mode", "stock")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "completed: 0 confirmed, 3 installed (3 nodes)") || !strings.Contains(out, "installed*") {
		t.Errorf("summary does not show 3 nodes installed (estimated):\n%s", out)
	}
}

func TestOTAPushSimReceiverUnknown(t *testing.T) {
	p, _ := writeImage(t, 5_000)
	_, _, err := execute(t, context.Background(), nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP32", "--sim-nodes", "2", "--sim-receiver", "cpp")
	if err == nil || err.Error() != `--sim-receiver: "cpp" is not one of meshfleet, stock` {
		t.Errorf("error %v", err)
	}
}
