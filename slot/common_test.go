package slot

import (
	"bytes"
	"compress/flate"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// testImage returns n deterministic pseudo-random bytes.
func testImage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// plainTransfer describes sending img uncompressed in chunks of size.
func plainTransfer(img []byte, size int) Transfer {
	return Transfer{
		Image: md5hex(img), ImageSize: int64(len(img)), Method: MethodNone,
		TransferSize: int64(len(img)), ChunkSize: size, Chunks: (len(img) + size - 1) / size,
		Version: "2.0.0", Role: "sensor", Hardware: "ESP32",
	}
}

// deflateTransfer describes sending img deflated; it returns the transfer
// bytes too.
func deflateTransfer(t *testing.T, img []byte, size int) (Transfer, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(img)
	w.Close()
	data := buf.Bytes()
	return Transfer{
		Image: md5hex(img), ImageSize: int64(len(img)), Method: "deflate",
		TransferSize: int64(len(data)), TransferMD5: md5hex(data), ChunkSize: size,
		Chunks: (len(data) + size - 1) / size, Version: "2.0.0", Role: "sensor", Hardware: "ESP32",
	}, data
}

// decode is the Decoder the tests hand to Finish; the real one comes from
// the compression package.
func decode(method string, r io.Reader) (io.Reader, error) {
	if method == "deflate" {
		return flate.NewReader(r), nil
	}
	return nil, fmt.Errorf("unsupported method %q", method)
}

func chunk(data []byte, size, i int) []byte {
	end := min((i+1)*size, len(data))
	return data[i*size : end]
}

// writeAll writes every chunk of data, in the order given (all chunks if
// order is nil).
func writeAll(t *testing.T, d *Download, data []byte, size int, order []int) {
	t.Helper()
	if order == nil {
		for i := 0; i*size < len(data); i++ {
			order = append(order, i)
		}
	}
	for _, i := range order {
		if err := d.WriteChunk(i, chunk(data, size, i)); err != nil {
			t.Fatalf("WriteChunk(%d): %v", i, err)
		}
	}
}

func mustOpen(t *testing.T, s Storage, opts *Options) *Store {
	t.Helper()
	st, err := Open(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// readSlot returns the bytes of the image in slot sl.
func readSlot(t *testing.T, st *Store, sl Slot) []byte {
	t.Helper()
	rc, err := st.OpenImage(sl)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bootable reports whether slot sl of a store would start: a good or ready
// slot whose bytes (if it has any recorded) match its recorded md5.
func bootable(st *Store, sl Slot) error {
	ss := st.State().Slot(sl)
	if ss.Status != Good && ss.Status != Ready {
		return fmt.Errorf("slot %s is %s", sl, ss.Status)
	}
	if ss.Image.Size == 0 {
		return nil // the factory image: not in the store
	}
	rc, err := st.OpenImage(sl)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if int64(len(b)) != ss.Image.Size || md5hex(b) != ss.Image.MD5 {
		return fmt.Errorf("slot %s holds %d bytes md5 %s, recorded %d bytes md5 %s", sl, len(b), md5hex(b), ss.Image.Size, ss.Image.MD5)
	}
	return nil
}
