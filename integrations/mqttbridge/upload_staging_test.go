package mqttbridge

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

// stagingBridge is a bridge whose control requests a test calls directly
// (its client is never connected: publishes fail fast).
func stagingBridge(t *testing.T, maxSize int64) *Bridge {
	t.Helper()
	return NewBridge(&fleettest.Memory{}, &Client{}, BridgeConfig{Prefix: "mf", MaxUploadSize: maxSize, UploadDir: t.TempDir()})
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Four uploads declaring 16 MiB each, a few chunks sent to each: the
// memory the gateway holds does not grow with the declared size (the
// chunks go to staging files, not to buffers of that size).
func TestUploadMemoryDoesNotGrowWithDeclaredSize(t *testing.T) {
	const size, chunkSize = 16 << 20, 64 << 10
	b := stagingBridge(t, size)
	defer b.uploads.closeAll()
	chunk := base64.StdEncoding.EncodeToString(make([]byte, chunkSize))
	before := heapInUse()
	var wg sync.WaitGroup
	errs := make(chan error, 4*8)
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := Sender{ClientID: "client" + itoa(c)}
			data, err := b.control(context.Background(), ControlRequest{Action: "upload_begin", Role: "r", Hardware: "h", Version: "1",
				Size: size, ChunkSize: chunkSize, MD5: strings.Repeat("0", 32)}, from)
			if err != nil {
				errs <- err
				return
			}
			id := data.(UploadStatus).UploadID
			for _, i := range []int{0, 5, 255, 5, 100} { // out of order, one resent
				if _, err := b.control(context.Background(), ControlRequest{Action: "upload_chunk", UploadID: id, Index: i, Data: chunk}, from); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	grown := int64(heapInUse()) - int64(before)
	runtime.KeepAlive(b) // its open uploads are what is measured
	t.Logf("heap growth with 4 uploads of %d MiB declared, 4 chunks of 64 KiB each: %d KiB", size>>20, grown>>10)
	if grown > 8<<20 {
		t.Fatalf("heap grew by %d MiB for 4 open uploads; it must not grow with their declared size", grown>>20)
	}
}

// The staging file is written at the chunks' offsets in any order, and
// upload_end streams it into the store.
func TestUploadStagedOutOfOrder(t *testing.T) {
	b := stagingBridge(t, 1<<20)
	defer b.uploads.closeAll()
	img := []byte(strings.Repeat("0123456789abcdef", 4096)[:60001])
	sum := md5.Sum(img)
	ctx := context.Background()
	data, err := b.control(ctx, ControlRequest{Action: "upload_begin", Role: "r", Hardware: "h", Version: "1",
		Size: int64(len(img)), ChunkSize: 4096, MD5: hex.EncodeToString(sum[:])}, Sender{})
	if err != nil {
		t.Fatal(err)
	}
	st := data.(UploadStatus)
	for i := st.Total - 1; i >= 0; i-- {
		chunk := img[i*4096 : min((i+1)*4096, len(img))]
		if _, err := b.control(ctx, ControlRequest{Action: "upload_chunk", UploadID: st.UploadID, Index: i, Data: base64.StdEncoding.EncodeToString(chunk)}, Sender{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.control(ctx, ControlRequest{Action: "upload_end", UploadID: st.UploadID}, Sender{}); err != nil {
		t.Fatal(err)
	}
	svc := b.svc.(*fleettest.Memory)
	imgs := svc.ImageList // the bridge is done with it
	if len(imgs) != 1 || string(svc.Data[imgs[0].ID]) != string(img) {
		t.Fatalf("stored %+v", imgs)
	}
	if n, files := b.uploads.open(); n != 0 || len(files) != 0 {
		t.Fatalf("after upload_end: %d uploads, staging files %v", n, files)
	}
}

// A staging file goes with its upload: on upload_end (stored or not),
// upload_abort, idle eviction and when the gateway stops; files left by a
// crash are removed at start.
func TestUploadStagingFilesRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "uploads")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "upload-123")
	other := filepath.Join(dir, "keep.txt")
	os.WriteFile(leftover, []byte("half an image"), 0o600)
	os.WriteFile(other, []byte("not ours"), 0o600)
	if err := PrepareUploadDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging directory: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover staging file kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a file not ours was removed: %v", err)
	}

	u := newUploads(dir, 1<<20, 4, time.Minute, nil)
	t0 := time.Unix(0, 0)
	begin := func(owner string) string {
		t.Helper()
		st, err := u.begin(ControlRequest{Role: "r", Hardware: "h", Version: "1", Size: 8, ChunkSize: 4, MD5: strings.Repeat("0", 32)}, owner, t0)
		if err != nil {
			t.Fatal(err)
		}
		return st.UploadID
	}
	files := func() int {
		_, f := u.open()
		return len(f)
	}
	a, b, c := begin("a"), begin("b"), begin("c")
	if files() != 3 {
		t.Fatalf("%d staging files for 3 uploads", files())
	}
	// upload_end that fails (chunks missing) keeps the upload; one whose
	// image is refused drops it.
	if _, err := u.finish(a, "a", t0); err == nil || !strings.Contains(err.Error(), "2 of 2 chunks missing") {
		t.Fatalf("end without chunks: %v", err)
	}
	for i := range 2 {
		if _, err := u.chunk(ControlRequest{UploadID: a, Index: i, Data: base64.StdEncoding.EncodeToString([]byte("abcd"))}, "a", t0); err != nil {
			t.Fatal(err)
		}
	}
	up, err := u.finish(a, "a", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.image(); err == nil {
		t.Fatal("md5 mismatch not found")
	}
	u.release(a)
	if files() != 2 {
		t.Fatalf("%d staging files after upload_end", files())
	}
	if err := u.abort(b, "b", t0); err != nil {
		t.Fatal(err)
	}
	if files() != 1 {
		t.Fatalf("%d staging files after upload_abort", files())
	}
	// Idle for longer than a minute: evicted with its file.
	u.sweepLocked(t0.Add(61 * time.Second))
	if n, f := u.open(); n != 0 || len(f) != 0 {
		t.Fatalf("after eviction of %s: %d uploads, files %v", c, n, f)
	}
	begin("d")
	u.closeAll()
	if n, f := u.open(); n != 0 || len(f) != 0 {
		t.Fatalf("after shutdown: %d uploads, files %v", n, f)
	}
	if _, err := u.begin(ControlRequest{Role: "r", Hardware: "h", Version: "1", Size: 8, ChunkSize: 4, MD5: strings.Repeat("0", 32)}, "e", t0); err == nil {
		t.Fatal("upload begun after shutdown")
	}
}

// upload_begin checks the declared size against the store's quota, and
// refuses chunk sizes that would make the bitmap of received chunks grow
// with the image.
func TestUploadBeginChecksQuotaAndChunkCount(t *testing.T) {
	full := errors.New("firmware store full: the image needs 1.0 MiB")
	u := newUploads(t.TempDir(), 16<<20, 2, time.Minute, func(size int64) error {
		if size > 1000 {
			return full
		}
		return nil
	})
	defer u.closeAll()
	req := ControlRequest{Role: "r", Hardware: "h", Version: "1", Size: 1 << 20, ChunkSize: 1 << 10, MD5: strings.Repeat("0", 32)}
	if _, err := u.begin(req, "a", time.Unix(0, 0)); !errors.Is(err, full) {
		t.Fatalf("begin over the quota: %v", err)
	}
	req.Size, req.ChunkSize = 1000, 1
	if _, err := u.begin(req, "a", time.Unix(0, 0)); err != nil {
		t.Fatalf("1000 chunks: %v", err)
	}
	u.room = nil
	req.Size = 16 << 20
	if _, err := u.begin(req, "a", time.Unix(0, 0)); err == nil || !strings.Contains(err.Error(), "use chunk_size 256 or more") {
		t.Fatalf("16 Mi chunks: %v", err)
	}
}
