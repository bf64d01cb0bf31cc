package heatshrink

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func benchData(b *testing.B) map[string][]byte {
	fw, err := os.ReadFile(filepath.Join(vectorDir, "in", "firmware_like.bin"))
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{"firmware_like": fw, "mixed1M": mixed(1<<20, 9)}
}

func BenchmarkEncode(b *testing.B) {
	for name, raw := range benchData(b) {
		for _, p := range vectorParams {
			b.Run(name+"/"+paramName(p), func(b *testing.B) {
				w, _ := NewWriter(io.Discard, p)
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					w.Reset(io.Discard)
					w.Write(raw)
					w.Close()
				}
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for name, raw := range benchData(b) {
		for _, p := range vectorParams {
			hs := encode(b, raw, p, len(raw))
			b.Run(name+"/"+paramName(p), func(b *testing.B) {
				r, _ := NewReader(nil, p)
				src := bytes.NewReader(hs)
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					src.Reset(hs)
					r.Reset(src)
					io.Copy(io.Discard, r)
				}
			})
		}
	}
}

func paramName(p Params) string { return fmt.Sprintf("w%dl%d", p.Window, p.Lookahead) }
