package compress

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

const vectorDir = "../testdata/heatshrink"

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{"none": None, "deflate": Deflate, "heatshrink": Heatshrink, " Deflate\n": Deflate, "HEATSHRINK": Heatshrink} {
		if got, err := ParseMethod(in); err != nil || got != want {
			t.Errorf("ParseMethod(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "gzip", "zlib", "heatshrink:w8l4", "de flate"} {
		if got, err := ParseMethod(in); !errors.Is(err, ErrUnknownMethod) || got != "" {
			t.Errorf("ParseMethod(%q) = %q, %v; want ErrUnknownMethod", in, got, err)
		}
	}
	_, err := ParseMethod("gzip")
	if want := `compression method "gzip" (want one of none, deflate, heatshrink): unknown compression method`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	for _, m := range Methods() {
		if got, err := ParseMethod(m.String()); err != nil || got != m {
			t.Errorf("ParseMethod(%q) does not round-trip: %q, %v", m, got, err)
		}
	}
}

func TestUnknownMethod(t *testing.T) {
	bad := Method("lz4")
	if _, err := Compress(bad, []byte("x")); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("Compress: %v", err)
	}
	if _, err := NewCompressor(bad, io.Discard); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("NewCompressor: %v", err)
	}
	if _, err := NewDecompressor(bad, bytes.NewReader(nil)); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("NewDecompressor: %v", err)
	}
	if _, err := DecompressTo(bad, bytes.NewReader(nil), io.Discard, 10); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("DecompressTo: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	images := map[string][]byte{
		"empty":         {},
		"one":           {0x42},
		"c_firmware":    readVector(t, "in/c_firmware.bin"),
		"firmware_like": FirmwareLike(300<<10, 1),
	}
	for _, m := range Methods() {
		for name, img := range images {
			enc, err := Compress(m, img)
			if err != nil {
				t.Fatalf("%s %s: %v", m, name, err)
			}
			d, err := NewDecompressor(m, iotest.HalfReader(bytes.NewReader(enc)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(iotest.OneByteReader(d))
			if err != nil || !bytes.Equal(got, img) {
				t.Errorf("%s %s: NewDecompressor gave %d of %d bytes, %v", m, name, len(got), len(img), err)
			}
			var out bytes.Buffer
			n, err := DecompressTo(m, bytes.NewReader(enc), &out, int64(len(img)))
			if err != nil || n != int64(len(img)) || !bytes.Equal(out.Bytes(), img) {
				t.Errorf("%s %s: DecompressTo with an exact limit: %d bytes, %v", m, name, n, err)
			}
		}
	}
}

// The encodings are the standard ones, readable by other implementations with the
// documented parameters.
func TestFormats(t *testing.T) {
	img := readVector(t, "in/c_firmware.bin")

	z, _ := Compress(Deflate, img)
	// RFC 1950: CMF 0x78 is deflate with a 32 KiB window; FLG 0xDA announces level 9.
	if z[0] != 0x78 || z[1] != 0xDA {
		t.Errorf("zlib header % x, want 78 da", z[:2])
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, img) {
		t.Errorf("stock zlib reader: %d bytes, %v", len(got), err)
	}

	// Streams from the reference heatshrink tool with the same parameters decode.
	ref := readVector(t, "c_firmware.w11l4.hs")
	d, _ := NewDecompressor(Heatshrink, bytes.NewReader(ref))
	if got, err := io.ReadAll(d); err != nil || !bytes.Equal(got, img) {
		t.Errorf("reference heatshrink stream: %d bytes, %v", len(got), err)
	}
	if hs, _ := Compress(Heatshrink, img); !bytes.Equal(hs, ref) {
		t.Errorf("Compress(Heatshrink) differs from the reference tool's -w 11 -l 4 output")
	}

	if n, _ := Compress(None, img); !bytes.Equal(n, img) {
		t.Error("Compress(None) changed the image")
	}
}

func TestDecompressionBomb(t *testing.T) {
	const limit = 1 << 20
	for _, m := range Methods() {
		for _, size := range []int{limit, limit + 1, 8 * limit} {
			img := make([]byte, size)
			enc, err := Compress(m, img)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			n, err := DecompressTo(m, bytes.NewReader(enc), &out, limit)
			if size <= limit {
				if err != nil || n != int64(size) {
					t.Errorf("%s, %d bytes within limit: %d, %v", m, size, n, err)
				}
				continue
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s, %d bytes from %d: err %v, want ErrTooLarge", m, size, len(enc), err)
			}
			if n != limit || out.Len() != limit {
				t.Errorf("%s: wrote %d (reported %d), want exactly the limit %d", m, out.Len(), n, limit)
			}
		}
	}
	if _, err := DecompressTo(None, bytes.NewReader(nil), io.Discard, -1); err == nil {
		t.Error("negative limit accepted")
	}
	if n, err := DecompressTo(Deflate, bytes.NewReader(mustCompress(t, Deflate, []byte("x"))), io.Discard, 0); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Errorf("zero limit: %d, %v", n, err)
	}
}

func mustCompress(t *testing.T, m Method, img []byte) []byte {
	t.Helper()
	b, err := Compress(m, img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAll(m Method, enc []byte) ([]byte, error) {
	var out bytes.Buffer
	_, err := DecompressTo(m, bytes.NewReader(enc), &out, 1<<24)
	return out.Bytes(), err
}

func TestCorruptInput(t *testing.T) {
	img := FirmwareLike(4000, 3)
	z := mustCompress(t, Deflate, img)
	flipped := bytes.Clone(z)
	flipped[len(z)/2] ^= 0x10
	badSum := bytes.Clone(z)
	badSum[len(z)-1] ^= 1
	cases := map[string][]byte{
		"empty":       {},
		"bad header":  []byte("PK\x03\x04 not zlib"),
		"flipped bit": flipped,
		"checksum":    badSum,
		"trailing":    append(bytes.Clone(z), 0),
		"two streams": append(bytes.Clone(z), z...),
	}
	for name, in := range cases {
		if _, err := decodeAll(Deflate, in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("deflate %s: err %v, want ErrCorrupt", name, err)
		}
	}
	for k := range len(z) {
		got, err := decodeAll(Deflate, z[:k])
		if !errors.Is(err, ErrCorrupt) || !bytes.HasPrefix(img, got) {
			t.Fatalf("deflate cut at %d of %d: %d bytes, %v", k, len(z), len(got), err)
		}
	}

	hs := mustCompress(t, Heatshrink, img)
	detected := 0
	for k := range len(hs) {
		got, err := decodeAll(Heatshrink, hs[:k])
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("heatshrink cut at %d: unexpected error %v", k, err)
		}
		if !bytes.HasPrefix(img, got) {
			t.Fatalf("heatshrink cut at %d: output is not a prefix of the image", k)
		}
		if err != nil {
			detected++
		}
	}
	// The format has no end marker: a cut that leaves fewer than 8 zero bits of a partial
	// item is indistinguishable from padding. Most cuts are caught.
	if detected < len(hs)*3/4 {
		t.Errorf("heatshrink: %d of %d truncations detected", detected, len(hs))
	}
}

func TestInputErrors(t *testing.T) {
	img := FirmwareLike(50000, 4)
	boom := errors.New("connection reset")
	for _, m := range Methods() {
		enc := mustCompress(t, m, img)
		r := io.MultiReader(bytes.NewReader(enc[:len(enc)/2]), iotest.ErrReader(boom))
		_, err := DecompressTo(m, r, io.Discard, 1<<24)
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want the reader's error and not ErrCorrupt", m, err)
		}
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestStalledInput(t *testing.T) {
	for _, m := range Methods() {
		if _, err := DecompressTo(m, emptyReader{}, io.Discard, 100); !errors.Is(err, io.ErrNoProgress) {
			t.Errorf("%s: reader that never returns data: %v", m, err)
		}
	}
}

type noRead struct{ t *testing.T }

func (r noRead) Read([]byte) (int, error) {
	r.t.Error("NewDecompressor read its input before the first Read")
	return 0, io.EOF
}

func TestDecompressorIsLazy(t *testing.T) {
	for _, m := range []Method{Deflate, Heatshrink} {
		if _, err := NewDecompressor(m, noRead{t}); err != nil {
			t.Fatal(err)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("flash write failed") }

func TestOutputError(t *testing.T) {
	for _, m := range Methods() {
		enc := mustCompress(t, m, FirmwareLike(10000, 1))
		if _, err := DecompressTo(m, bytes.NewReader(enc), failWriter{}, 1<<20); err == nil || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: failing writer reported as %v", m, err)
		}
		w, err := NewCompressor(m, failWriter{})
		if err != nil {
			t.Fatal(err)
		}
		_, werr := w.Write(FirmwareLike(100000, 1))
		if cerr := w.Close(); werr == nil && cerr == nil {
			t.Errorf("%s: compressing into a failing writer succeeded", m)
		}
	}
}
