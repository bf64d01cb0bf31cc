package heatshrink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"testing/iotest"
)

const vectorDir = "../../testdata/heatshrink"

// vectorParams are the parameter pairs the reference vectors were made with.
var vectorParams = []Params{{8, 4}, {10, 5}, {11, 4}, {13, 6}}

type vector struct {
	name string // file name of the .hs
	p    Params
	hs   []byte // reference tool output
	raw  []byte // its input
}

var vectorName = regexp.MustCompile(`^(.+)\.w(\d+)l(\d+)\.hs$`)

func loadVectors(t testing.TB) []vector {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorDir, "*.hs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 24 {
		t.Fatalf("found %d .hs vectors in %s, want 24 (6 inputs x 4 parameter pairs)", len(paths), vectorDir)
	}
	var vs []vector
	for _, path := range paths {
		m := vectorName.FindStringSubmatch(filepath.Base(path))
		if m == nil {
			t.Fatalf("unexpected vector name %s", path)
		}
		w, _ := strconv.Atoi(m[2])
		l, _ := strconv.Atoi(m[3])
		hs, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(vectorDir, "in", m[1]+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, vector{name: filepath.Base(path), p: Params{w, l}, hs: hs, raw: raw})
	}
	return vs
}

func inputs(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorDir, "in", "*.bin"))
	if err != nil || len(paths) != 6 {
		t.Fatalf("inputs in %s: %d files, %v", vectorDir, len(paths), err)
	}
	m := map[string][]byte{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(path)] = b
	}
	return m
}

func decode(t testing.TB, hs []byte, p Params) ([]byte, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(hs), p)
	if err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(r)
}

func encode(t testing.TB, raw []byte, p Params, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, p)
	if err != nil {
		t.Fatal(err)
	}
	for rest := raw; len(rest) > 0; {
		k := min(chunk, len(rest))
		if n, err := w.Write(rest[:k]); err != nil || n != k {
			t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeReferenceVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			got, err := decode(t, v.hs, v.p)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got, v.raw) {
				t.Fatalf("decoded %d bytes, want the %d input bytes", len(got), len(v.raw))
			}
			// Byte-at-a-time input and output exercise every resumption point.
			r, _ := NewReader(iotest.OneByteReader(bytes.NewReader(v.hs)), v.p)
			got, err = io.ReadAll(iotest.OneByteReader(r))
			if err != nil || !bytes.Equal(got, v.raw) {
				t.Fatalf("byte-at-a-time decode: %d bytes, %v", len(got), err)
			}
		})
	}
}

// The encoder makes the reference tool's choices, so its output equals the vectors.
func TestEncodeMatchesReferenceTool(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			for _, chunk := range []int{1, 1000, 1 << 20} {
				got := encode(t, v.raw, v.p, chunk)
				if !bytes.Equal(got, v.hs) {
					i := 0
					for i < min(len(got), len(v.hs)) && got[i] == v.hs[i] {
						i++
					}
					t.Fatalf("chunk %d: %d bytes, reference %d bytes, first difference at %d", chunk, len(got), len(v.hs), i)
				}
			}
		})
	}
}

// The naive models agree with the reference vectors, which makes them fair oracles.
func TestReferenceModelsMatchVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		out, ok := refDecode(v.hs, v.p)
		if !ok || !bytes.Equal(out, v.raw) {
			t.Errorf("%s: refDecode ok=%v, %d bytes", v.name, ok, len(out))
		}
		if v.p.Window <= 10 || len(v.raw) <= 20000 || !testing.Short() {
			if got := refEncode(v.raw, v.p); !bytes.Equal(got, v.hs) {
				t.Errorf("%s: refEncode gives %d bytes, reference %d", v.name, len(got), len(v.hs))
			}
		}
	}
}

// mixed returns data with long and short repeats, zero and 0xFF runs and random stretches,
// larger than the Writer's buffer so that sliding is exercised.
func mixed(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, n)
	for len(b) < n {
		switch rng.IntN(5) {
		case 0:
			b = append(b, bytes.Repeat([]byte{0xFF}, rng.IntN(3000))...)
		case 1:
			k := rng.IntN(200)
			for range k {
				b = append(b, byte(rng.Uint32()))
			}
		case 2:
			if len(b) > 0 {
				off := 1 + rng.IntN(min(len(b), 40000))
				k := rng.IntN(300)
				for range k {
					b = append(b, b[len(b)-off])
				}
			}
		case 3:
			b = append(b, make([]byte, rng.IntN(500))...)
		default:
			b = append(b, fmt.Sprintf("task %d ready at %d ms; ", rng.IntN(50), rng.IntN(1e6))...)
		}
	}
	return b[:n]
}

func TestRoundTrip(t *testing.T) {
	params := append([]Params{{4, 3}, {9, 8}, {15, 4}, {15, 14}, {14, 7}}, vectorParams...)
	data := inputs(t)
	data["mixed"] = mixed(300<<10, 7)
	data["zeros"] = make([]byte, 200<<10)
	for name, raw := range data {
		for _, p := range params {
			for _, chunk := range []int{777, 1 << 30} {
				hs := encode(t, raw, p, chunk)
				got, err := decode(t, hs, p)
				if err != nil || !bytes.Equal(got, raw) {
					t.Errorf("%s %v chunk %d: round trip gave %d of %d bytes, %v", name, p, chunk, len(got), len(raw), err)
				}
			}
		}
	}
}

func TestEncodeMatchesModel(t *testing.T) {
	// Includes parameters the vectors do not cover.
	params := []Params{{4, 3}, {5, 4}, {8, 4}, {9, 8}, {12, 3}}
	for i, p := range params {
		raw := mixed(20000, uint64(i))
		if got, want := encode(t, raw, p, 333), refEncode(raw, p); !bytes.Equal(got, want) {
			t.Errorf("%v: %d bytes, model %d bytes", p, len(got), len(want))
		}
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		p  Params
		ok bool
	}{
		{Params{4, 3}, true},
		{Params{15, 14}, true},
		{Params{11, 4}, true},
		{Params{3, 2}, false},
		{Params{16, 4}, false},
		{Params{8, 2}, false},
		{Params{8, 8}, false},
		{Params{0, 0}, false},
		{Params{-1, 3}, false},
	}
	for _, tt := range tests {
		_, werr := NewWriter(io.Discard, tt.p)
		_, rerr := NewReader(bytes.NewReader(nil), tt.p)
		for _, err := range []error{werr, rerr, tt.p.Validate()} {
			if tt.ok != (err == nil) {
				t.Errorf("%v: err = %v, want ok=%v", tt.p, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidParams) {
				t.Errorf("%v: %v does not wrap ErrInvalidParams", tt.p, err)
			}
		}
	}
	err := Params{8, 9}.Validate()
	if want := "heatshrink: lookahead 9 bits outside 3..7 (window 8): invalid heatshrink parameters"; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// Every prefix of a valid stream either decodes cleanly (when the cut leaves only what
// looks like padding) or fails with ErrTruncated, exactly as the bit-level model decides,
// and what it yields is a prefix of the input.
func TestTruncated(t *testing.T) {
	for _, v := range loadVectors(t) {
		if len(v.hs) > 3000 {
			continue
		}
		detected := 0
		for k := range len(v.hs) {
			got, err := decode(t, v.hs[:k], v.p)
			want, ok := refDecode(v.hs[:k], v.p)
			if err != nil && !errors.Is(err, ErrTruncated) {
				t.Fatalf("%s cut at %d: unexpected error %v", v.name, k, err)
			}
			if (err == nil) != ok {
				t.Fatalf("%s cut at %d: err %v, model says clean=%v", v.name, k, err, ok)
			}
			if err == nil && !bytes.Equal(got, want) {
				t.Fatalf("%s cut at %d: output differs from model", v.name, k)
			}
			if !bytes.HasPrefix(v.raw, got) {
				t.Fatalf("%s cut at %d: output is not a prefix of the input", v.name, k)
			}
			if err != nil {
				detected++
			}
		}
		if len(v.hs) > 100 && detected < len(v.hs)/2 {
			t.Errorf("%s: only %d of %d cuts detected", v.name, detected, len(v.hs))
		}
	}
}

func TestGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		in := make([]byte, rng.IntN(2000))
		for j := range in {
			in[j] = byte(rng.Uint32())
		}
		p := vectorParams[i%len(vectorParams)]
		got, err := decode(t, in, p)
		want, ok := refDecode(in, p)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrTruncated)) {
			t.Fatalf("garbage %d: err %v, model clean=%v", i, err, ok)
		}
		if !bytes.Equal(got, want[:len(got)]) || (ok && len(got) != len(want)) {
			t.Fatalf("garbage %d: output differs from model", i)
		}
	}
	// The worst case: every item a longest back-reference.
	p := Params{15, 14}
	bomb := bytes.Repeat([]byte{0}, 1000) // 8000 zero bits: 266 references of 1 byte back
	got, err := decode(t, bomb, p)
	if err == nil || len(got) > len(bomb)*8/(1+15+14)*(1<<14) {
		t.Fatalf("bomb: %d bytes, %v", len(got), err)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestIOErrors(t *testing.T) {
	p := Params{10, 5}
	raw := mixed(100<<10, 3)

	w, _ := NewWriter(&failWriter{n: 5000}, p)
	_, werr := w.Write(raw)
	cerr := w.Close()
	if werr == nil && cerr == nil {
		t.Fatal("write to a failing writer succeeded")
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}

	hs := encode(t, raw, p, 1<<20)
	boom := errors.New("link lost")
	r, _ := NewReader(io.MultiReader(bytes.NewReader(hs[:1000]), iotest.ErrReader(boom)), p)
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || !bytes.HasPrefix(raw, got) {
		t.Fatalf("failing reader: %d bytes, %v", len(got), err)
	}

	r, _ = NewReader(emptyReader{}, p)
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("reader that never returns data: %v", err)
	}

	// The final bytes arriving together with io.EOF are still decoded.
	r, _ = NewReader(iotest.DataErrReader(bytes.NewReader(hs)), p)
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("data with EOF: %d bytes, %v", len(got), err)
	}
}

func TestReset(t *testing.T) {
	p := Params{8, 4}
	// b starts with zeros, which the encoder takes from the zero-filled initial window, so
	// a Reset that kept a's history would go wrong.
	a := bytes.Repeat([]byte{0xAA, 0x55, 0x11}, 40000) // no zeros, longer than the buffer
	b := append(make([]byte, 100), mixed(7000, 2)...)
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, p)
	w.Write(a)
	w.Close()
	first := bytes.Clone(buf.Bytes())
	buf.Reset()
	w.Reset(&buf)
	w.Write(b)
	w.Close()
	if !bytes.Equal(buf.Bytes(), encode(t, b, p, 1<<20)) {
		t.Fatal("Writer.Reset does not start a fresh stream")
	}
	r, _ := NewReader(bytes.NewReader(first), p)
	io.ReadAll(r)
	r.Reset(bytes.NewReader(buf.Bytes()))
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Reader.Reset: %d bytes, %v", len(got), err)
	}
}

func TestIncompressibleExpansion(t *testing.T) {
	// Literals cost 9 bits, so incompressible data grows by at most 1/8 plus a byte.
	raw := make([]byte, 10000)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	for _, p := range vectorParams {
		if n := len(encode(t, raw, p, 1<<20)); n > len(raw)*9/8+1 {
			t.Errorf("%v: %d bytes from %d random bytes", p, n, len(raw))
		}
	}
}
