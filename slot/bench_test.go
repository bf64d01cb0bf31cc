package slot

import (
	"path/filepath"
	"testing"
)

// BenchmarkDownload stages and verifies a 1 MiB image in 1 KiB chunks (the
// stock chunk size), flushing every 32 chunks.
func BenchmarkDownload(b *testing.B) {
	img := testImage(1<<20, 40)
	tr := plainTransfer(img, 1024)
	for _, backend := range []string{"memory", "dir"} {
		b.Run(backend, func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				var s Storage = NewMemory()
				if backend == "dir" {
					d, err := NewDir(filepath.Join(b.TempDir(), "slots"))
					if err != nil {
						b.Fatal(err)
					}
					s = d
				}
				st, err := Open(s, nil)
				if err != nil {
					b.Fatal(err)
				}
				d, err := st.Begin(tr)
				if err != nil {
					b.Fatal(err)
				}
				for i := range tr.Chunks {
					if err := d.WriteChunk(i, chunk(img, 1024, i)); err != nil {
						b.Fatal(err)
					}
				}
				if err := st.Finish(d, decode, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
