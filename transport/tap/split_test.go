package tap

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The splitter must find the same messages however the stream is cut into
// reads. The expected messages come from splitting the whole stream at once.
func TestSplitterIgnoresChunkBoundaries(t *testing.T) {
	stream := []byte("\x00{\"a\":1}\x00\x00{\"b\":\"two\"}\x00x\x00{\"c\":3}\x00partial")
	var want []string
	parts := bytes.Split(stream, []byte{0})
	for _, p := range parts[:len(parts)-1] { // the last part has no NUL yet
		if len(p) > 0 {
			want = append(want, string(p))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		s := splitter{max: 1 << 10}
		var got []string
		rest := stream
		for len(rest) > 0 {
			n := 1 + rng.IntN(len(rest))
			s.feed(rest[:n], func(m []byte) { got = append(got, string(m)) }, func(int) { t.Fatal("no message is too long here") })
			rest = rest[n:]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("messages = %q, want %q", got, want)
		}
		if s.pending() != len("partial") {
			t.Fatalf("pending = %d, want %d", s.pending(), len("partial"))
		}
	}
}

func TestSplitterSkipsOverlongMessages(t *testing.T) {
	s := splitter{max: 4}
	var got []string
	var long []int
	emit := func(m []byte) { got = append(got, string(m)) }
	tooLong := func(n int) { long = append(long, n) }
	s.feed([]byte("ab\x00toolong"), emit, tooLong)
	s.feed([]byte("er\x00cd\x00"), emit, tooLong)
	s.feed([]byte("abcd\x00abcde\x00"), emit, tooLong)
	if !slices.Equal(got, []string{"ab", "cd", "abcd"}) {
		t.Fatalf("messages = %q", got)
	}
	if !slices.Equal(long, []int{9, 5}) {
		t.Fatalf("too long sizes = %v, want [9 5]", long)
	}
}

// FuzzSplitter checks the splitter against splitting the whole stream at
// once, for any bytes, any cut point and any size limit.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("{\"a\":1}\x00{\"b\":2}\x00"), 3, 64)
	f.Add([]byte("\x00\x00x\x00partial"), 1, 1)
	f.Add([]byte("toolongmessage\x00ok\x00"), 5, 4)
	f.Fuzz(func(t *testing.T, stream []byte, cut, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 + (max&0xffff)%1024
		}
		var want []string
		tooLongWant := 0
		parts := bytes.Split(stream, []byte{0})
		for _, p := range parts[:len(parts)-1] {
			switch {
			case len(p) > max:
				tooLongWant++
			case len(p) > 0:
				want = append(want, string(p))
			}
		}
		s := splitter{max: max}
		var got []string
		tooLong := 0
		if cut < 0 || cut > len(stream) {
			cut = len(stream) / 2
		}
		for _, chunk := range [][]byte{stream[:cut], stream[cut:]} {
			s.feed(chunk, func(m []byte) { got = append(got, string(m)) }, func(int) { tooLong++ })
		}
		if !slices.Equal(got, want) || tooLong != tooLongWant {
			t.Fatalf("got %q and %d too long, want %q and %d", got, tooLong, want, tooLongWant)
		}
	})
}
