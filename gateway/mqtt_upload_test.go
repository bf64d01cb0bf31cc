package gateway

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
)

// MQTT uploads are staged in <state_dir>/uploads (0700, leftovers of an
// earlier run removed at start), a declared size beyond the store's quota
// is refused at upload_begin, and nothing stays staged after upload_end.
func TestMQTTUploadStagedInStateDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.Firmware.MaxUploadSize = 64 << 10
	cfg.Firmware.MaxStoreSize = 64 << 10
	staging := filepath.Join(cfg.StateDir, "uploads")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(staging, "upload-4711")
	if err := os.WriteFile(leftover, []byte("half an image from a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, _, done := startSimGateway(t, ctx, cfg, 1)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select { // done is empty if waitReady already took Run's result
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	defer stop()
	waitReady(t, ctx, g, done)
	if st, err := os.Stat(staging); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging directory %s: %v; want mode 0700", staging, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover staging file kept: %v", err)
	}
	rec, c := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", nil) // the bridge is up and subscribed once it published
	k := &controller{t: t, ctx: ctx, rec: rec, c: c}

	img := compress.FirmwareLike(40<<10, 3)
	if r := k.upload(img, md5Hex(img), "1"); !r.OK {
		t.Fatalf("upload: %+v", r)
	}
	// 40 KiB of the 64 KiB quota are used: a second image of 40 KiB is
	// refused before any chunk is sent.
	k.fail(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": "2",
		"size": 40 << 10, "chunk_size": 4096, "md5": md5Hex(img)}, "max_store_size")
	if left, _ := filepath.Glob(filepath.Join(staging, "*")); len(left) != 0 {
		t.Fatalf("staging files after the uploads: %v", left)
	}
	// An upload in progress when the gateway stops leaves nothing behind.
	begin := k.ok(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": "3",
		"size": 8 << 10, "chunk_size": 4096, "md5": md5Hex(img)})
	k.ok(map[string]any{"action": "upload_chunk", "upload_id": begin["upload_id"], "index": 1,
		"data": base64.StdEncoding.EncodeToString(img[:4096])})
	if left, _ := filepath.Glob(filepath.Join(staging, "*")); len(left) != 1 {
		t.Fatalf("staging files of one upload in progress: %v", left)
	}
	stop()
	if left, _ := filepath.Glob(filepath.Join(staging, "*")); len(left) != 0 {
		t.Fatalf("staging files after the gateway stopped: %v", left)
	}
}
