package compress

import (
	"bytes"
	"io"
	"testing"
)

func BenchmarkCompress(b *testing.B) {
	img := FirmwareLike(1<<20, 1)
	for _, m := range Methods() {
		b.Run(string(m), func(b *testing.B) {
			var n int
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				enc, err := Compress(m, img)
				if err != nil {
					b.Fatal(err)
				}
				n = len(enc)
			}
			b.ReportMetric(float64(n)/float64(len(img)), "ratio")
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	img := FirmwareLike(1<<20, 1)
	for _, m := range Methods() {
		enc, err := Compress(m, img)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(m), func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				if _, err := DecompressTo(m, bytes.NewReader(enc), io.Discard, int64(len(img))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFirmwareLike(b *testing.B) {
	b.SetBytes(1 << 20)
	for b.Loop() {
		FirmwareLike(1<<20, 1)
	}
}
