package history

import (
	"errors"
	"slices"
	"testing"
)

func TestChunkRoundTrip(t *testing.T) {
	a := []rawSample{
		{off: 0, known: 0b1_1111_1111_1111, v: [numMetrics]int64{40000, 2500, 1 << 31, 7, 0, 90, 4000000000, -71, 58, 12, 3, 2, 0}},
		{off: 1, known: 0b0_0000_1000_0001, v: [numMetrics]int64{39000, 0, 0, 0, 0, 0, 0, -90}},
		{off: 59, known: 0, v: [numMetrics]int64{}},
	}
	b := []rawSample{{off: 30, known: 1, v: [numMetrics]int64{1}}}
	// A minute written in two parts is the two segments one after the
	// other.
	data := appendSegment(appendSegment(nil, a), b)
	var got []rawSample
	if err := decodeChunk(data, func(x *rawSample) { got = append(got, *x) }); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(a), b...)
	want[1].v = [numMetrics]int64{39000, 0, 0, 0, 0, 0, 0, -90} // unknown values decode as 0
	if !slices.Equal(got, want) {
		t.Fatalf("decoded %+v\nwant %+v", got, want)
	}
	if n := len(appendSegment(nil, a)); n > 40 {
		t.Errorf("three samples take %d bytes", n)
	}
}

func TestChunkMalformed(t *testing.T) {
	good := appendSegment(nil, []rawSample{{off: 3, known: 0b11, v: [numMetrics]int64{5, 6}}})
	for _, bad := range [][]byte{good[:len(good)-1], {1}, {1, 0, 0xff, 0xff, 0xff, 0xff}, {0xff, 0xff, 0xff, 0xff, 0xff}} {
		if err := decodeChunk(bad, func(*rawSample) {}); !errors.Is(err, errBadChunk) {
			t.Errorf("% x: %v, want errBadChunk", bad, err)
		}
	}
}

// A chunk read from a damaged file is an error, never a panic or a
// sample with a mask beyond the metrics.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(appendSegment(nil, []rawSample{{off: 3, known: 0b101, v: [numMetrics]int64{5, 0, -6}}}))
	f.Add([]byte{2, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeChunk(data, func(x *rawSample) {
			if x.known >= 1<<numMetrics {
				t.Fatalf("mask %b", x.known)
			}
		})
	})
}
