package esp_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/compress/heatshrink"
	"github.com/meshfleet/meshfleet/internal/cpppeer"
)

// unshrink runs the library's decoder (esp/host/heatshrink.cpp) on stream;
// clean reports a clean end (exit status 0), and a status other than 0 or 2
// fails t.
func unshrink(t *testing.T, bin string, p heatshrink.Params, seed int, stream []byte, extra ...string) (out []byte, clean bool) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{fmt.Sprint(p.Window), fmt.Sprint(p.Lookahead), fmt.Sprint(seed)}, extra...)...)
	cmd.Stdin = bytes.NewReader(stream)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), true
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		return stdout.Bytes(), false
	}
	t.Fatalf("heatshrink %v: %v: %s", p, err, stderr.String())
	return nil, false
}

// The library's decoder turns every vector the reference tool made
// (testdata/heatshrink) back into its input, whatever pieces the stream
// arrives in, also when it is restored from its saved state after every
// piece (a receiver resuming after a reboot).
func TestHeatshrinkDecoderReadsTheReferenceVectors(t *testing.T) {
	bin := cpppeer.BuildHeatshrink(t)
	dir := filepath.Join("..", "testdata", "heatshrink")
	vectors, err := filepath.Glob(filepath.Join(dir, "*.hs"))
	if err != nil || len(vectors) < 24 {
		t.Fatalf("%d vectors in %s (%v), want 24", len(vectors), dir, err)
	}
	for _, v := range vectors {
		name := filepath.Base(v)
		var base string
		var p heatshrink.Params
		if _, err := fmt.Sscanf(strings.ReplaceAll(strings.TrimSuffix(name, ".hs"), ".", " "), "%s w%dl%d", &base, &p.Window, &p.Lookahead); err != nil {
			t.Fatalf("vector name %s: %v", name, err)
		}
		stream, err := os.ReadFile(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(dir, "in", base+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		for seed := range 3 {
			got, clean := unshrink(t, bin, p, seed, stream)
			if !clean || !bytes.Equal(got, want) {
				t.Errorf("%s (seed %d): clean end %v, %d bytes decoded, want %d bytes exactly", name, seed, clean, len(got), len(want))
			}
			// Restarted after every piece from its saved state, the
			// window read back from the output: the same bytes.
			got, clean = unshrink(t, bin, p, seed, stream, "resume")
			if !clean || !bytes.Equal(got, want) {
				t.Errorf("%s (seed %d), resumed after every piece: clean end %v, %d bytes decoded, want %d bytes exactly", name, seed, clean, len(got), len(want))
			}
		}
	}
}

// On damaged streams (cut, bit flips, trailing garbage) the library's
// decoder gives the Go decoder's bytes and the same verdict on the end.
func TestHeatshrinkDecoderAgreesWithGoOnDamagedStreams(t *testing.T) {
	bin := cpppeer.BuildHeatshrink(t)
	p := heatshrink.Params{Window: 11, Lookahead: 4} // what Offers say (ota/PROTOCOL.md)
	stream, err := os.ReadFile(filepath.Join("..", "testdata", "heatshrink", "text.w11l4.hs"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	verdicts := map[bool]int{}
	for i := range 40 {
		s := append([]byte(nil), stream...)
		switch i % 3 {
		case 0:
			s = s[:rng.IntN(len(s))]
		case 1:
			s[rng.IntN(len(s))] ^= 1 << rng.IntN(8)
		case 2:
			s = append(s, byte(rng.IntN(256)))
		}
		r, err := heatshrink.NewReader(bytes.NewReader(s), p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(r)
		wantClean := err == nil
		got, clean := unshrink(t, bin, p, i, s)
		if clean != wantClean || !bytes.Equal(got, want) {
			t.Fatalf("case %d: C++ %d bytes, clean %v; Go %d bytes, clean %v (%v)", i, len(got), clean, len(want), wantClean, err)
		}
		verdicts[clean]++
	}
	if verdicts[true] == 0 || verdicts[false] == 0 {
		t.Fatalf("verdicts %v: the cases did not exercise both ends", verdicts)
	}
}
