package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/firmware"
)

func TestFirmwareCommands(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	keys := filepath.Join(dir, "keys")
	image := filepath.Join(dir, "fw.bin")
	content := []byte("firmware image bytes")
	if err := os.WriteFile(image, content, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	out, _, err := execute(t, ctx, nil, "firmware", "keygen", keys)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "public key (hex): ") {
		t.Errorf("keygen output: %s", out)
	}

	out, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "sensor", "--hardware", "ESP32",
		"--version", "1.2.0", "--sign", filepath.Join(keys, firmware.PrivateKeyFile), "--store", store)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(content)
	md5hex := hex.EncodeToString(sum[:])
	if !strings.HasPrefix(out, "added ") || !strings.HasSuffix(out, ": sensor/ESP32 version 1.2.0, 20 bytes, md5 "+md5hex+", counter 1\n") {
		t.Errorf("add output: %q", out)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")

	out, _, err = execute(t, ctx, nil, "firmware", "list", "--json", "--store", store)
	if err != nil {
		t.Fatal(err)
	}
	var images []firmware.Image
	if err := json.Unmarshal([]byte(out), &images); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(images) != 1 || images[0].ID != id || images[0].MD5 != md5hex || !images[0].Signed() {
		t.Errorf("list --json: %+v", images)
	}

	out, _, err = execute(t, ctx, nil, "firmware", "list", "--store", store)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], id+"  sensor  ESP32") || !strings.Contains(lines[1], " counter 1 ") {
		t.Errorf("list table:\n%s", out)
	}

	if out, _, err = execute(t, ctx, nil, "firmware", "verify", id, "--key", filepath.Join(keys, firmware.PublicKeyFile), "--store", store); err != nil || out != id+": md5 and signature OK\n" {
		t.Errorf("verify: %q, %v", out, err)
	}

	// Signed again as a downgrade: it keeps its counter.
	if out, _, err = execute(t, ctx, nil, "firmware", "sign", id, "--key", filepath.Join(keys, firmware.PrivateKeyFile), "--allow-downgrade", "--store", store); err != nil ||
		out != "signed "+id+": sensor/ESP32 version 1.2.0, counter 1, downgrade\n" {
		t.Errorf("sign --allow-downgrade: %q, %v", out, err)
	}

	// Errors a user sees.
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "other", "--hardware", "ESP32", "--version", "1", "--counter", "3", "--store", store)
	if err == nil || err.Error() != "--counter and --allow-downgrade need --sign" {
		t.Errorf("counter without a key: %v", err)
	}
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "sensor", "--hardware", "ESP32", "--version", "1.3.0", "--store", store)
	if !errors.Is(err, firmware.ErrExists) || !strings.Contains(err.Error(), "is image "+id+" (version 1.2.0)") {
		t.Errorf("duplicate add: %v", err)
	}
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "my_sensor", "--hardware", "ESP32", "--version", "1", "--store", store)
	if !errors.Is(err, firmware.ErrInvalidMeta) {
		t.Errorf("bad role: %v", err)
	}
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "sensor", "--store", store)
	if err == nil || !strings.Contains(err.Error(), `required flag(s) "hardware", "version" not set`) {
		t.Errorf("missing flags: %v", err)
	}
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "x", "--hardware", "ESP32", "--version", "1", "--sign", image, "--store", store)
	if !errors.Is(err, firmware.ErrInvalidKey) {
		t.Errorf("bad signing key: %v", err)
	}
	if _, _, err = execute(t, ctx, nil, "firmware", "keygen", keys); !errors.Is(err, firmware.ErrExists) {
		t.Errorf("keygen over existing keys: %v", err)
	}

	if out, _, err = execute(t, ctx, nil, "firmware", "remove", id, "--store", store); err != nil || out != "removed "+id+"\n" {
		t.Errorf("remove: %q, %v", out, err)
	}
	if _, _, err = execute(t, ctx, nil, "firmware", "remove", "../"+id, "--store", store); !errors.Is(err, firmware.ErrInvalidID) {
		t.Errorf("remove with an escaping id: %v", err)
	}
}

func TestFirmwareAddCompressed(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	image := filepath.Join(dir, "fw.bin")
	content := compress.FirmwareLike(64<<10, 1)
	if err := os.WriteFile(image, content, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, _, err := execute(t, ctx, nil, "firmware", "add", image, "--role", "sensor", "--hardware", "ESP32",
		"--version", "1", "--compress", "deflate,heatshrink", "--store", store)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "\n  deflate: ") || !strings.Contains(out, "\n  heatshrink: ") {
		t.Errorf("add output: %s", out)
	}
	st, err := firmware.Open(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	images, err := st.List()
	if err != nil || len(images) != 1 || len(images[0].Variants) != 2 {
		t.Fatalf("stored: %+v, %v", images, err)
	}
	for _, m := range []compress.Method{compress.Deflate, compress.Heatshrink} {
		packed, err := st.ReadTransfer(images[0].ID, string(m))
		if err != nil {
			t.Fatal(err)
		}
		if len(packed) >= len(content) {
			t.Errorf("%s variant is %d bytes, image %d", m, len(packed), len(content))
		}
		r, err := compress.NewDecompressor(m, bytes.NewReader(packed))
		if err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(back, content) {
			t.Errorf("%s variant does not decompress to the image: %v", m, err)
		}
	}
	_, _, err = execute(t, ctx, nil, "firmware", "add", image, "--role", "other", "--hardware", "ESP32",
		"--version", "1", "--compress", "zstd", "--store", store)
	if err == nil || !strings.HasPrefix(err.Error(), "--compress: ") {
		t.Errorf("unknown method: %v", err)
	}
}

func TestFirmwareStoreFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "from-env")
	t.Setenv(firmwareDirEnv, dir)
	image := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(image, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Listing a store that does not exist says so and creates nothing.
	out, _, err := execute(t, ctx, nil, "firmware", "list")
	if err != nil || out != "no images in "+dir+"\n" {
		t.Errorf("list of a missing store: %q, %v", out, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("list created the store: %v", err)
	}
	if out, _, err := execute(t, ctx, nil, "firmware", "list", "--json"); err != nil || out != "[]\n" {
		t.Errorf("list --json of a missing store: %q, %v", out, err)
	}
	if _, _, err := execute(t, ctx, nil, "firmware", "add", image, "--role", "r", "--hardware", "h", "--version", "v"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("store from %s holds %d entries, %v", firmwareDirEnv, len(entries), err)
	}
}
