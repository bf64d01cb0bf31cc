package esp_test

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/meshfleet/meshfleet/ota"
)

// The library's b91 codec (src/meshfleet/dense.hpp) is the Go side's
// (ota.Dense) both ways: the text it encodes a held chunk to when it
// serves a child's repair, written in place over the chunk's bytes with the
// least room the receiver leaves, is the Go encoder's, byte for byte, and
// it decodes what the Go encoder sends. Every length up to 64 and a chunk
// of 4096 bytes (the largest a receiver takes), of random and uniform
// bytes; text outside the alphabet is rejected.
func TestDenseIsTheGoCodec(t *testing.T) {
	f := startFrames(t)
	rng := rand.New(rand.NewPCG(13, 722))
	var inputs [][]byte
	for n := 0; n <= 64; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		inputs = append(inputs, b)
	}
	for _, fill := range []byte{0x00, 0xff, 0x5a} {
		inputs = append(inputs, bytes.Repeat([]byte{fill}, 4096))
	}
	big := make([]byte, 4096)
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	inputs = append(inputs, big, big[:4095], big[:1000])
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, in := range inputs {
		want := ota.Dense.EncodeToString(in)
		if got := f.ask("dense %s", orDash(hex.EncodeToString(in))); got != orDash(want) {
			t.Fatalf("%d bytes: the library encodes\n%s\nthe Go codec\n%s", len(in), got, want)
		}
		if got := f.ask("undense %s", orDash(want)); got != orDash(hex.EncodeToString(in)) {
			t.Fatalf("%d bytes: the library decodes the Go text to %s", len(in), got)
		}
	}
	for _, bad := range []string{`ab"c`, `abc\`, "ab\x7fc", "ab\x80c"} {
		if got := f.ask("undense %s", bad); got != "error" {
			t.Errorf("undense %q = %q, want error", bad, got)
		}
	}
}
