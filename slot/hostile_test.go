package slot

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
)

func TestHostileTransfers(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	ok := plainTransfer(testImage(1000, 30), 100)
	mod := func(f func(*Transfer)) Transfer {
		tr := ok
		f(&tr)
		return tr
	}
	tests := []struct {
		name string
		tr   Transfer
		msg  string
	}{
		{"md5", mod(func(t *Transfer) { t.Image = "../../etc/passwd" }), `image md5 "../../etc/passwd" is not 32 lowercase hex digits`},
		{"upper md5", mod(func(t *Transfer) { t.Image = strings.ToUpper(ok.Image) }), "is not 32 lowercase hex digits"},
		{"huge image", mod(func(t *Transfer) { t.ImageSize = math.MaxInt64 }), "image size 9223372036854775807 outside [0, 16777216]"},
		{"negative image", mod(func(t *Transfer) { t.ImageSize = -1 }), "image size -1 outside [0, 16777216]"},
		{"huge transfer", mod(func(t *Transfer) { t.TransferSize = 1 << 40 }), "transfer size 1099511627776 outside [0, 18874368]"},
		{"no method", mod(func(t *Transfer) { t.Method = "" }), `method "" must be 1 to 16 characters`},
		{"method path", mod(func(t *Transfer) { t.Method = "../x" }), `method "../x" may only contain a-z, 0-9 and '-'`},
		{"none size mismatch", mod(func(t *Transfer) { t.TransferSize = 999; t.Chunks = 10 }), "method none but image size 1000 != transfer size 999"},
		{"transfer md5", mod(func(t *Transfer) { t.TransferMD5 = "xyz" }), `transfer md5 "xyz" is not 32 lowercase hex digits`},
		{"zero chunk size", mod(func(t *Transfer) { t.ChunkSize = 0 }), "chunk size 0 outside [1, 65536]"},
		{"huge chunk size", mod(func(t *Transfer) { t.ChunkSize = 1 << 30 }), "chunk size 1073741824 outside [1, 65536]"},
		{"no chunks", mod(func(t *Transfer) { t.Chunks = 0 }), "chunk count 0 is not positive"},
		{"huge chunk count", mod(func(t *Transfer) { t.TransferSize = 0; t.Chunks = math.MaxInt }), "9223372036854775807 chunks of 100 bytes exceed the 18874368-byte transfer limit"},
		{"chunk count mismatch", mod(func(t *Transfer) { t.Chunks = 11 }), "1000 bytes in chunks of 100 make 10 chunks, not 11"},
		{"signature", mod(func(t *Transfer) { t.Signature = []byte{1, 2, 3} }), "signature is 3 bytes, want 64"},
		{"long version", mod(func(t *Transfer) { t.Version = strings.Repeat("v", 65) }), "version is 65 bytes, at most 64 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := st.Begin(tt.tr)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTransfer) || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "slot: invalid transfer: ") {
				t.Errorf("got %v\nwant slot: invalid transfer: ...%s", err, tt.msg)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("rejecting the transfer allocated %d bytes", grew)
			}
		})
	}
	if st.Status().Download != nil {
		t.Error("a rejected transfer was staged")
	}
	// The largest valid claim allocates a bitmap, not the transfer.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := st.Begin(Transfer{Image: ok.Image, Method: "heatshrink", ChunkSize: 1, Chunks: 18874368}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("Begin with 18M chunks allocated %d bytes", grew)
	}
}

func TestHostileChunks(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	img := testImage(950, 31)
	tr := plainTransfer(img, 100) // 10 chunks, the last 50 bytes
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		i    int
		data []byte
		msg  string
	}{
		{-1, make([]byte, 100), "slot: invalid chunk: index -1 outside [0, 10)"},
		{10, make([]byte, 50), "slot: invalid chunk: index 10 outside [0, 10)"},
		{math.MaxInt, nil, "slot: invalid chunk: index 9223372036854775807 outside [0, 10)"},
		{0, make([]byte, 101), "slot: invalid chunk: chunk 0 is 101 bytes, want 100"},
		{0, make([]byte, 99), "slot: invalid chunk: chunk 0 is 99 bytes, want 100"},
		{3, nil, "slot: invalid chunk: chunk 3 is 0 bytes, want 100"},
		{9, make([]byte, 100), "slot: invalid chunk: chunk 9 is 100 bytes, want 50"},
		{9, make([]byte, 1<<20), "slot: invalid chunk: chunk 9 is 1048576 bytes, want 50"},
	} {
		if err := d.WriteChunk(tt.i, tt.data); !errors.Is(err, ErrChunk) || err.Error() != tt.msg {
			t.Errorf("WriteChunk(%d, %d bytes) = %v, want %s", tt.i, len(tt.data), err, tt.msg)
		}
	}
	if d.Count() != 0 {
		t.Fatalf("rejected chunks counted: %d", d.Count())
	}
	// A duplicate is refused and leaves the first copy alone.
	first := chunk(img, 100, 4)
	if err := d.WriteChunk(4, first); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteChunk(4, bytes.Repeat([]byte{0xee}, 100)); !errors.Is(err, ErrDuplicate) || err.Error() != "slot: chunk already held: chunk 4" {
		t.Errorf("duplicate: %v", err)
	}
	if got, _ := d.ReadChunk(4); !bytes.Equal(got, first) || d.Count() != 1 {
		t.Errorf("duplicate changed the chunk or count (%d)", d.Count())
	}
	if _, err := d.ReadChunk(5); !errors.Is(err, ErrChunk) {
		t.Errorf("ReadChunk of a missing chunk: %v", err)
	}
	if d.Has(-1) || d.Has(10) || d.Has(math.MaxInt) {
		t.Error("Has out of range reported true")
	}
	if d.NextMissing(4) != 5 || d.NextMissing(-5) != 0 || d.NextMissing(100) != -1 {
		t.Errorf("NextMissing: %d %d %d", d.NextMissing(4), d.NextMissing(-5), d.NextMissing(100))
	}
}

// A stock distributor announces neither chunk size nor transfer size; the
// receiver takes the chunk size from chunk 0 and the length of the last
// chunk is learned when it arrives.
func TestUnknownTransferSize(t *testing.T) {
	mem := NewMemory()
	st := mustOpen(t, mem, nil)
	img := testImage(2500, 32)
	tr := Transfer{Image: md5hex(img), Method: MethodNone, ChunkSize: 1024, Chunks: 3}
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteChunk(2, make([]byte, 1025)); !errors.Is(err, ErrChunk) || err.Error() != "slot: invalid chunk: last chunk 2 is 1025 bytes, want 1 to 1024" {
		t.Errorf("oversized last chunk: %v", err)
	}
	writeAll(t, d, img, 1024, []int{2})
	d.Flush()
	mem.Crash()
	st = mustOpen(t, mem, nil)
	d, _ = st.Begin(tr)
	if got, err := d.ReadChunk(2); err != nil || !bytes.Equal(got, img[2048:]) {
		t.Fatalf("last chunk after crash: %d bytes, %v", len(got), err)
	}
	writeAll(t, d, img, 1024, []int{0, 1})
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if got := st.State().B.Image.Size; got != 2500 {
		t.Errorf("learned image size %d", got)
	}
}

func TestDamagedStaging(t *testing.T) {
	img := testImage(1000, 33)
	tr := plainTransfer(img, 100)
	setup := func(t *testing.T, held []int) *Memory {
		mem := NewMemory()
		st := mustOpen(t, mem, nil)
		d, _ := st.Begin(tr)
		writeAll(t, d, img, 100, held)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		return mem
	}
	appendLog := func(mem *Memory, b []byte) {
		f, _ := mem.Open(stagingLog)
		n, _ := f.Size()
		f.WriteAt(b, n)
		f.Sync()
	}
	held := func(t *testing.T, mem *Memory) []int {
		st := mustOpen(t, mem, nil)
		d, err := st.Begin(tr)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for i := range tr.Chunks {
			if d.Has(i) {
				out = append(out, i)
			}
		}
		st.Close()
		return out
	}

	t.Run("garbage transfer record", func(t *testing.T) {
		mem := setup(t, []int{0, 1})
		writeAtomic(mem, stagingMeta, []byte("{garbage"))
		st := mustOpen(t, mem, nil)
		if st.Status().Download != nil {
			t.Error("garbage record produced a download")
		}
		for _, name := range []string{stagingLog, stagingData, stagingMeta} {
			if _, err := mem.Open(name); err == nil {
				t.Errorf("%s not removed", name)
			}
		}
	})
	t.Run("torn and zeroed tail", func(t *testing.T) {
		mem := setup(t, []int{0, 1})
		appendLog(mem, make([]byte, 12))                 // a zero-filled record
		appendLog(mem, appendLogRecord(nil, 5, 100)[:7]) // torn
		if got := held(t, mem); len(got) != 2 || got[0] != 0 || got[1] != 1 {
			t.Errorf("held %v, want [0 1]", got)
		}
		// The log was rewritten, so new records are found after a crash.
		st := mustOpen(t, mem, nil)
		d, _ := st.Begin(tr)
		writeAll(t, d, img, 100, []int{7})
		d.Flush()
		mem.Crash()
		if got := held(t, mem); len(got) != 3 || got[2] != 7 {
			t.Errorf("after rewrite and crash: held %v", got)
		}
	})
	t.Run("record past the data", func(t *testing.T) {
		mem := setup(t, []int{0})
		appendLog(mem, appendLogRecord(nil, 8, 100)) // valid record, no data written
		if got := held(t, mem); len(got) != 1 || got[0] != 0 {
			t.Errorf("held %v, want [0]", got)
		}
	})
	t.Run("log of another transfer", func(t *testing.T) {
		mem := setup(t, []int{0, 1, 2})
		other := plainTransfer(testImage(1000, 34), 100)
		log := logHeader(other)
		log = appendLogRecord(log, 0, 100)
		writeAtomic(mem, stagingLog, log)
		if got := held(t, mem); len(got) != 0 {
			t.Errorf("held %v from another transfer's log", got)
		}
	})
	t.Run("missing data file", func(t *testing.T) {
		mem := setup(t, []int{0, 1})
		mem.Remove(stagingData)
		mem.Sync()
		if got := held(t, mem); len(got) != 0 {
			t.Errorf("held %v without a data file", got)
		}
	})
}
