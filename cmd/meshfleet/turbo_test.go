package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// meshfleet ota push --mode stock-turbo to a simulated mesh of stock
// receivers ends with every one running the image (uncompressed: stock
// receivers cannot decompress, so --compress defaults to none).
func TestPushStockTurboSimulated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(p, make([]byte, 20000), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := execute(t, ctx, nil, "ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--mode", "stock-turbo",
		"--sim-nodes", "6", "--timeout", "10m")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "mode stock-turbo, compress none") || !strings.Contains(out, "6/6 simulated stock receivers run the image") {
		t.Fatalf("output:\n%s", out)
	}
}

// Without --mode, a push to stock receivers runs stock-turbo (the
// default "auto"), and one to meshfleet receivers runs broadcast; an
// explicit --mode stock still gives plain stock.
func TestPushAutoModeFollowsTheReceivers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(p, make([]byte, 20000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sim-receiver", "stock"}, "mode stock-turbo, compress none"},
		{[]string{"--sim-receiver", "meshfleet"}, "mode broadcast, compress deflate"},
		{[]string{"--sim-receiver", "stock", "--mode", "stock"}, "mode stock, compress deflate"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := append([]string{"ota", "push", p, "--role", "sensor", "--hardware", "ESP8266", "--sim-nodes", "4", "--timeout", "30m"}, c.args...)
		out, _, err := execute(t, ctx, nil, args...)
		cancel()
		if err != nil {
			t.Fatalf("push %v: %v\n%s", c.args, err, out)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("push %v: want %q in:\n%s", c.args, c.want, out)
		}
	}
}
