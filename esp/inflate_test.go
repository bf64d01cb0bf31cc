package esp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/internal/cpppeer"
)

// The host inflater turns the Go side's deflate transfers (compress.Deflate,
// what `meshfleet ota push --compress deflate` sends) back into the image,
// fed in chunks of the sizes a distributor picks; and a stream taken up
// again at every resume point it offers (a deflate block boundary: the
// saved bits and last byte, the window read back from the output) gives
// exactly the image too, as a receiver resumes after a reboot.
func TestInflaterResumesAtEveryPoint(t *testing.T) {
	bin := cpppeer.BuildInflate(t)
	dir := t.TempDir()
	for _, size := range []int{1, 5_000, 300_000, 1 << 20} {
		img := compress.FirmwareLike(size, uint64(size))
		stream, err := compress.Compress(compress.Deflate, img)
		if err != nil {
			t.Fatal(err)
		}
		imgPath, streamPath := filepath.Join(dir, "image"), filepath.Join(dir, "stream")
		if err := os.WriteFile(imgPath, img, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(streamPath, stream, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []string{"4096", "1024", "777"} {
			out, err := exec.Command(bin, streamPath, chunk, imgPath).CombinedOutput()
			got := strings.TrimSpace(string(out))
			if err != nil || !strings.HasPrefix(got, "ok ") {
				t.Fatalf("%d-byte image (%d compressed) in %s-byte chunks: %s (%v)", size, len(stream), chunk, got, err)
			}
			if size >= 300_000 && got == "ok 0" {
				t.Errorf("%d-byte image in %s-byte chunks: no resume point checked", size, chunk)
			}
			t.Logf("%d-byte image, %d compressed, %s-byte chunks: %s resume points restored", size, len(stream), chunk, got[3:])
		}
	}
}
