package compress

import (
	"bytes"
	"compress/zlib"
	"testing"
)

func zlibRatio(t testing.TB, img []byte) float64 {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	w.Write(img)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return float64(buf.Len()) / float64(len(img))
}

// DESIGN.md: real ESP32 images compress to 55–63% with gzip over the whole image.
func TestFirmwareLikeRatio(t *testing.T) {
	for _, size := range []int{256 << 10, 1 << 20} {
		for _, seed := range []uint64{0, 1, 2, 42, 0xDEADBEEF} {
			r := zlibRatio(t, FirmwareLike(size, seed))
			if r < 0.55 || r > 0.65 {
				t.Errorf("size %d seed %d: zlib-9 ratio %.3f, want 0.55..0.65", size, seed, r)
			}
		}
	}
}

func TestFirmwareLikeDeterministic(t *testing.T) {
	a, b := FirmwareLike(100000, 7), FirmwareLike(100000, 7)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different images")
	}
	if bytes.Equal(a, FirmwareLike(100000, 8)) {
		t.Fatal("different seeds gave the same image")
	}
	// A shorter image of the same seed is not simply a prefix (the layout scales), but
	// it is still deterministic.
	if !bytes.Equal(FirmwareLike(5000, 7), FirmwareLike(5000, 7)) {
		t.Fatal("small image not deterministic")
	}
}

func TestFirmwareLikeSizes(t *testing.T) {
	for _, size := range []int{-5, 0, 1, 5, 24, 33, 57, 58, 100, 1000, 4096, 65537} {
		img := FirmwareLike(size, 1)
		if len(img) != max(size, 0) {
			t.Errorf("FirmwareLike(%d): %d bytes", size, len(img))
		}
	}
}

func TestFirmwareLikeLayout(t *testing.T) {
	img := FirmwareLike(1<<20, 3)
	if img[0] != 0xE9 {
		t.Errorf("image magic %#x, want 0xe9 (esptool image header)", img[0])
	}
	if !bytes.Contains(img, bytes.Repeat([]byte{0xFF}, 64)) {
		t.Error("no 0xFF-filled arrays")
	}
	if !bytes.Contains(img, make([]byte, 16<<10)) {
		t.Error("no zero padding segment")
	}
	if !bytes.Contains(img, []byte("E (%u) ")) {
		t.Error("no log strings")
	}
}
