package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/scenario"
)

// restGateway serves the gateway's HTTP API alone (no mesh, no MQTT): the
// firmware endpoints need only the store. stop waits until every request
// handler has returned. wrap, if given, wraps the API's handler.
func restGateway(t *testing.T, cfg Config, wrap ...func(http.Handler) http.Handler) (g *Gateway, api string, stop func()) {
	t.Helper()
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, ln, err := g.httpServer()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wrap {
		srv.Handler = w(srv.Handler)
	}
	go srv.Serve(ln)
	stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("http shutdown: %v", err)
		}
	})
	t.Cleanup(stop)
	return g, "http://" + ln.Addr().String() + "/api/v1", stop
}

func firmwareURL(api, version, md5hex string) string {
	u := api + "/firmware?role=sensor&hardware=ESP32&version=" + version
	if md5hex != "" {
		u += "&md5=" + md5hex
	}
	return u
}

func decodeImage(t *testing.T, body string) fleet.Image {
	t.Helper()
	var im fleet.Image
	if err := json.Unmarshal([]byte(body), &im); err != nil || im.ID == "" {
		t.Fatalf("not an image document: %s (%v)", body, err)
	}
	return im
}

// TestUploadSameVersionOtherBytesConflicts: a version names one image. The
// same image again is an idempotent success (200, not 201); other bytes
// under a stored version are refused with 409 naming the stored image, also
// when the request states the new image's md5, and also when ten such
// uploads race: exactly one of them is stored.
func TestUploadSameVersionOtherBytesConflicts(t *testing.T) {
	cfg := testConfig(t)
	cfg.Firmware.MaxConcurrentUploads = 10
	g, api, _ := restGateway(t, cfg)
	a, b := compress.FirmwareLike(8<<10, 1), compress.FirmwareLike(8<<10, 2)
	const octets = "application/octet-stream"

	code, body := call(t, "POST", firmwareURL(api, "1.0.0", ""), octets, a)
	if code != http.StatusCreated {
		t.Fatalf("first upload: %d %s", code, body)
	}
	first := decodeImage(t, body)

	code, body = call(t, "POST", firmwareURL(api, "1.0.0", md5Hex(a)), octets, a)
	if code != http.StatusOK || decodeImage(t, body).ID != first.ID {
		t.Fatalf("same image again: %d %s, want 200 with image %s", code, body, first.ID)
	}

	for _, sum := range []string{"", md5Hex(b)} {
		code, body = call(t, "POST", firmwareURL(api, "1.0.0", sum), octets, b)
		if code != http.StatusConflict {
			t.Fatalf("other bytes under 1.0.0 (md5=%q): %d %s, want 409", sum, code, body)
		}
		for _, want := range []string{first.ID, first.MD5, md5Hex(b), "1.0.0", "new version"} {
			if !strings.Contains(body, want) {
				t.Errorf("409 message lacks %q: %s", want, body)
			}
		}
	}

	// The same bytes under another version: the image keeps its version.
	code, body = call(t, "POST", firmwareURL(api, "1.0.1", ""), octets, a)
	if code != http.StatusConflict || !strings.Contains(body, first.ID) || !strings.Contains(body, "1.0.0") {
		t.Fatalf("same bytes as 1.0.1: %d %s, want 409 naming image %s version 1.0.0", code, body, first.ID)
	}

	// Ten different images race for version 2.0.0.
	const racers = 10
	codes, bodies := make([]int, racers), make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			codes[i], bodies[i] = call(t, "POST", firmwareURL(api, "2.0.0", ""), octets, compress.FirmwareLike(8<<10, uint64(100+i)))
		})
	}
	wg.Wait()
	var winner fleet.Image
	for i, c := range codes {
		if c == http.StatusCreated {
			if winner.ID != "" {
				t.Fatalf("two different images stored as 2.0.0: %s and %s", winner.ID, bodies[i])
			}
			winner = decodeImage(t, bodies[i])
		}
	}
	if winner.ID == "" {
		t.Fatalf("no racer won: %v %q", codes, bodies)
	}
	for i, c := range codes {
		if c != http.StatusCreated && (c != http.StatusConflict || !strings.Contains(bodies[i], winner.ID)) {
			t.Errorf("racer %d: %d %s, want 409 naming %s", i, c, bodies[i], winner.ID)
		}
	}

	imgs, err := g.Images(t.Context())
	if err != nil || len(imgs) != 2 {
		t.Fatalf("store holds %d images (%v), want 1.0.0 and 2.0.0: %+v", len(imgs), err, imgs)
	}
}

// stopGateway stops a gateway started for a test and waits (bounded) for
// it, so it no longer writes its state when the test's directory goes.
// If Run already returned and waitReady took its result, this waits out the bound.
func stopGateway(cancel context.CancelFunc, done chan error) {
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
}

// TestUploadConflictOverMQTT: upload_end goes through the same rule.
func TestUploadConflictOverMQTT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	g, _, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: 1, Seed: 5, Speed: 25, Model: "esp32"}, nil)
	defer stopGateway(cancel, done)
	waitReady(t, ctx, g, done)
	rec, c := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(2)) // subscribed, and the mesh is up
	k := &controller{t: t, ctx: ctx, rec: rec, c: c}
	a, b := compress.FirmwareLike(8<<10, 1), compress.FirmwareLike(8<<10, 2)

	r := k.upload(a, md5Hex(a), "1.0.0")
	if !r.OK {
		t.Fatalf("first upload: %+v", r)
	}
	id := r.Data.(map[string]any)["id"].(string)
	if r = k.upload(a, md5Hex(a), "1.0.0"); !r.OK || r.Data.(map[string]any)["id"] != id {
		t.Fatalf("same image again: %+v, want ok with image %s", r, id)
	}
	r = k.upload(b, md5Hex(b), "1.0.0")
	if r.OK || !strings.Contains(r.Error, id) || !strings.Contains(r.Error, md5Hex(a)) || !strings.Contains(r.Error, "new version") {
		t.Fatalf("other bytes under 1.0.0: %+v, want an error naming image %s", r, id)
	}
	if imgs, _ := g.Images(ctx); len(imgs) != 1 || imgs[0].MD5 != md5Hex(a) {
		t.Fatalf("store after the conflict: %+v", imgs)
	}
}

// patternReader yields n pseudo-random bytes without holding them.
type patternReader struct {
	state uint64
	n     int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	for i := range p {
		r.state ^= r.state << 13
		r.state ^= r.state >> 7
		r.state ^= r.state << 17
		p[i] = byte(r.state)
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// TestUploadMemoryBounded sends 8 concurrent 16 MiB uploads to the REST
// API: the image bytes stream to disk, so everything the process allocates
// meanwhile (an upper bound of its heap growth) stays far below the 128 MiB
// uploaded.
func TestUploadMemoryBounded(t *testing.T) {
	const uploads, size = 8, 16 << 20
	cfg := testConfig(t)
	cfg.Firmware.MaxUploadSize = size
	cfg.Firmware.MaxConcurrentUploads = uploads
	g, api, _ := restGateway(t, cfg)

	var before, after, settled runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	codes, bodies := make([]int, uploads), make([]string, uploads)
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() {
			req, err := http.NewRequest("POST", firmwareURL(api, fmt.Sprint("1.0.", i), ""), &patternReader{state: uint64(i) + 1, n: size})
			if err != nil {
				t.Error(err)
				return
			}
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			codes[i], bodies[i] = resp.StatusCode, string(b)
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	runtime.GC()
	runtime.ReadMemStats(&settled)

	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d concurrent uploads of %d MiB: %.2f MiB allocated in all (bounds the heap growth), heap in use after GC %+.2f MiB",
		uploads, size>>20, float64(allocated)/(1<<20), (float64(settled.HeapInuse)-float64(before.HeapInuse))/(1<<20))
	for i, c := range codes {
		if c != http.StatusCreated {
			t.Fatalf("upload %d: %d %s", i, c, bodies[i])
		}
	}
	if allocated > 32<<20 {
		t.Fatalf("uploads allocated %d MiB, want < 32 MiB: images are held in memory", allocated>>20)
	}
	if imgs, err := g.Images(t.Context()); err != nil || len(imgs) != uploads {
		t.Fatalf("store holds %d images (%v), want %d", len(imgs), err, uploads)
	}
}

// TestUploadStoreQuota: firmware.max_store_size bounds the store; an upload
// that does not fit is refused with 507, saying how much is used and how to
// free space; deleting an image makes room.
func TestUploadStoreQuota(t *testing.T) {
	cfg := testConfig(t)
	cfg.Firmware.MaxUploadSize = 64 << 10
	cfg.Firmware.MaxStoreSize = 128 << 10
	_, api, _ := restGateway(t, cfg)
	const octets = "application/octet-stream"
	var stored []fleet.Image
	for i := range 2 {
		code, body := call(t, "POST", firmwareURL(api, fmt.Sprint("1.", i), ""), octets, compress.FirmwareLike(60<<10, uint64(i)))
		if code != http.StatusCreated {
			t.Fatalf("upload %d: %d %s", i, code, body)
		}
		stored = append(stored, decodeImage(t, body))
	}
	third := compress.FirmwareLike(60<<10, 9)
	code, body := call(t, "POST", firmwareURL(api, "1.2", ""), octets, third)
	if code != http.StatusInsufficientStorage {
		t.Fatalf("upload beyond the quota: %d %s, want 507", code, body)
	}
	for _, want := range []string{"2 images use 120.0 KiB of the 128.0 KiB limit", "firmware.max_store_size", "DELETE /api/v1/firmware/{id}"} {
		if !strings.Contains(body, want) {
			t.Errorf("507 message lacks %q: %s", want, body)
		}
	}
	if code, body := call(t, "DELETE", api+"/firmware/"+stored[0].ID, "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body := call(t, "POST", firmwareURL(api, "1.2", ""), octets, third); code != http.StatusCreated {
		t.Fatalf("upload after a delete: %d %s", code, body)
	}
	for _, c := range []struct {
		id   string
		want int
	}{{stored[0].ID, http.StatusNotFound}, {"not-an-id", http.StatusBadRequest}} {
		if code, body := call(t, "DELETE", api+"/firmware/"+c.id, "", nil); code != c.want || !strings.Contains(body, `"error"`) {
			t.Errorf("delete %s: %d %s, want %d", c.id, code, body, c.want)
		}
	}
}

// TestUploadBrokenOffLeavesNothing: a client that goes away mid-upload
// leaves no file in the store.
func TestUploadBrokenOffLeavesNothing(t *testing.T) {
	cfg := testConfig(t)
	// The store creates its staging directory before it reads the body, so
	// the handler's first read of the body means the upload is being staged.
	reading := make(chan struct{})
	notify := sync.OnceFunc(func() { close(reading) })
	g, api, stop := restGateway(t, cfg, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = readNotifier{r.Body, notify}
			h.ServeHTTP(w, r)
		})
	})
	host := strings.TrimSuffix(strings.TrimPrefix(api, "http://"), "/api/v1")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/firmware?role=sensor&hardware=ESP32&version=1 HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", host, 1<<20)
	if _, err := conn.Write(compress.FirmwareLike(100<<10, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reading:
	case <-time.After(30 * time.Second):
		t.Fatal("the upload never reached the store")
	}
	if !hasStaging(t, g.store.Dir()) {
		t.Fatal("the upload is read but not staged in the store")
	}
	conn.Close()
	stop() // waits for the handler
	entries, err := os.ReadDir(g.store.Dir())
	if err != nil || len(entries) != 0 {
		t.Fatalf("store after a broken-off upload: %v %v", entries, err)
	}
}

// readNotifier calls notify on the first Read.
type readNotifier struct {
	io.ReadCloser
	notify func()
}

func (r readNotifier) Read(p []byte) (int, error) {
	r.notify()
	return r.ReadCloser.Read(p)
}

func hasStaging(t *testing.T, dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			return true
		}
	}
	return false
}

// TestRemoveImageInUse: an image a running campaign distributes cannot be
// deleted; once the campaign is aborted it can.
func TestRemoveImageInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	g, _, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: 1, Seed: 5, Speed: 25, Model: "esp32"}, nil)
	defer stopGateway(cancel, done)
	waitReady(t, ctx, g, done)
	// No ESP8266 node in the mesh: the campaign keeps running.
	img := uploadREST(t, g, "sensor", "ESP8266", "2.0.0", compress.FirmwareLike(8<<10, 4))
	c := startREST(t, g, fleet.CampaignRequest{Image: img.ID})
	api := "http://" + g.HTTPAddr + "/api/v1"
	code, body := call(t, "DELETE", api+"/firmware/"+img.ID, "", nil)
	if code != http.StatusConflict || !strings.Contains(body, c.ID) {
		t.Fatalf("delete while campaign %s runs: %d %s, want 409 naming it", c.ID, code, body)
	}
	if code, body := call(t, "DELETE", api+"/ota/"+c.ID, "", nil); code != http.StatusOK {
		t.Fatalf("abort: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", api+"/firmware/"+img.ID, "", nil); code != http.StatusOK || !strings.Contains(body, img.ID) {
		t.Fatalf("delete after the abort: %d %s", code, body)
	}
	if imgs, _ := g.Images(ctx); len(imgs) != 0 {
		t.Fatalf("images after the delete: %+v", imgs)
	}
}

func TestFirmwareLimitsConfig(t *testing.T) {
	for _, c := range []struct{ set, want string }{
		{"firmware.max_concurrent_uploads=0", "firmware.max_concurrent_uploads"},
		{"firmware.max_store_size=1000", "firmware.max_store_size"},
	} {
		_, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n"), nil, []string{c.set})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: %v, want an error naming %s", c.set, err, c.want)
		}
	}
	cfg, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n"), nil, nil)
	if err != nil || cfg.Firmware.MaxConcurrentUploads != 2 || cfg.Firmware.MaxStoreSize != 1<<30 {
		t.Fatalf("defaults: %+v, %v", cfg.Firmware, err)
	}
}
