package heatshrink

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// fuzzParams are the vector parameters plus the extremes of the valid range.
var fuzzParams = append([]Params{{4, 3}, {15, 14}}, vectorParams...)

// FuzzReader feeds arbitrary bytes to the Reader and checks it against the bit-level model:
// same output, and an error exactly when the model finds the end malformed.
func FuzzReader(f *testing.F) {
	for i, v := range loadVectors(f) {
		f.Add(v.hs[:min(len(v.hs), 300)], uint8(i))
	}
	f.Fuzz(func(t *testing.T, in []byte, sel uint8) {
		p := fuzzParams[int(sel)%len(fuzzParams)]
		r, err := NewReader(iotest.HalfReader(bytes.NewReader(in)), p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		want, ok := refDecode(in, p)
		if err != nil && !errors.Is(err, ErrTruncated) {
			t.Fatalf("unexpected error %v", err)
		}
		if (err == nil) != ok {
			t.Fatalf("err %v, model says clean=%v", err, ok)
		}
		if !bytes.Equal(got, want[:min(len(got), len(want))]) || (ok && len(got) != len(want)) {
			t.Fatalf("output (%d bytes) differs from model (%d bytes)", len(got), len(want))
		}
	})
}

// FuzzRoundTrip checks that anything encoded decodes back, and that the encoder makes the
// reference encoder's choices.
func FuzzRoundTrip(f *testing.F) {
	for name, b := range inputs(f) {
		f.Add(b[:min(len(b), 2000)], uint8(len(name)))
	}
	f.Fuzz(func(t *testing.T, raw []byte, sel uint8) {
		p := fuzzParams[int(sel)%len(fuzzParams)]
		var buf bytes.Buffer
		w, err := NewWriter(&buf, p)
		if err != nil {
			t.Fatal(err)
		}
		// Split the input at a data-dependent point to vary the write pattern.
		cut := int(sel) % (len(raw) + 1)
		w.Write(raw[:cut])
		w.Write(raw[cut:])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := decode(t, buf.Bytes(), p)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("round trip with %v: %d of %d bytes, %v", p, len(got), len(raw), err)
		}
		if p.Window <= 11 && len(raw) <= 4096 {
			if want := refEncode(raw, p); !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("encoding with %v differs from the model", p)
			}
		}
	})
}
