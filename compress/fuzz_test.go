package compress

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecompressTo feeds arbitrary input to every method: the only acceptable outcomes
// are success, ErrCorrupt and ErrTooLarge, and never more than the limit.
func FuzzDecompressTo(f *testing.F) {
	img := FirmwareLike(3000, 1)
	for i, m := range Methods() {
		enc, err := Compress(m, img)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc, uint8(i))
		f.Add(enc[:len(enc)/2], uint8(i))
	}
	f.Add([]byte{0x78, 0xDA, 0x03, 0x00}, uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, sel uint8) {
		const limit = 1 << 20
		m := Methods()[int(sel)%len(Methods())]
		var out bytes.Buffer
		n, err := DecompressTo(m, bytes.NewReader(in), &out, limit)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: unexpected error %v", m, err)
		}
		if n != int64(out.Len()) || n > limit {
			t.Fatalf("%s: reported %d bytes, wrote %d", m, n, out.Len())
		}
		if err == nil && m != None {
			// What decoded cleanly must decode the same through the plain reader.
			d, _ := NewDecompressor(m, bytes.NewReader(in))
			again, err := io.ReadAll(d)
			if err != nil || !bytes.Equal(again, out.Bytes()) {
				t.Fatalf("%s: NewDecompressor disagrees: %d bytes, %v", m, len(again), err)
			}
		}
	})
}
