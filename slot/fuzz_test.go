package slot

import (
	"bytes"
	"testing"
)

// FuzzParseLog feeds arbitrary bytes after a valid header to the chunk log
// parser: it must not panic, must credit only valid chunks, and must never
// claim more valid bytes than it was given.
func FuzzParseLog(f *testing.F) {
	tr := Transfer{Image: "0123456789abcdef0123456789abcdef", Method: MethodNone, ChunkSize: 100, Chunks: 10}
	f.Add(appendLogRecord(appendLogRecord(nil, 0, 100), 9, 40), true)
	f.Add(make([]byte, 36), true)
	f.Add([]byte("MFSL\x01\x00\x00\x00garbage"), false)
	f.Add(appendLogRecord(nil, 9, 101), true)
	f.Fuzz(func(t *testing.T, tail []byte, withHeader bool) {
		data := tail
		if withHeader {
			data = append(logHeader(tr), tail...)
		}
		chunks, valid := parseLog(data, tr)
		if valid > len(data) || valid < 0 {
			t.Fatalf("valid %d of %d bytes", valid, len(data))
		}
		if valid > 0 && (valid-logHeaderSize)%logRecordSize != 0 {
			t.Fatalf("valid length %d is not header plus whole records", valid)
		}
		d := Download{t: tr}
		for i, n := range chunks {
			if err := d.checkChunk(i, n); err != nil {
				t.Fatalf("credited invalid chunk %d (%d bytes): %v", i, n, err)
			}
		}
	})
}

// FuzzDecodeState: any state file either fails to decode or decodes to a
// state that satisfies the invariants and survives a round trip.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(State{Active: A, A: SlotState{Status: Good}, B: SlotState{Status: Empty}}))
	f.Add(encodeState(State{Active: B, Pending: A, Boots: 2, A: SlotState{Status: Ready, Image: Info{MD5: "0123456789abcdef0123456789abcdef", Size: 5}}, B: SlotState{Status: Good}}))
	f.Add([]byte(`{"format":1,"active":"A","pending":"B","a":{"status":"good"},"b":{"status":"bad"}}`))
	f.Add([]byte(`{"format":1,"active":"A","deadline":"not a time"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			return
		}
		if !st.Active.valid() || st.Slot(st.Active).Status != Good || (st.Pending != "" && st.Slot(st.Pending).Status != Ready) {
			t.Fatalf("invariants broken: %+v", st)
		}
		again, err := decodeState(encodeState(st))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !bytes.Equal(encodeState(again), encodeState(st)) {
			t.Fatalf("round trip changed the state")
		}
	})
}

// FuzzWriteChunks drives a download with arbitrary chunk indices and
// lengths: no panic, and the bitmap agrees with the writes that succeeded.
func FuzzWriteChunks(f *testing.F) {
	f.Add(uint16(7), uint8(10), []byte{0, 7, 1, 7, 9, 3, 9, 2, 200, 7})
	f.Add(uint16(1), uint8(1), []byte{0, 1, 0, 1})
	f.Add(uint16(64), uint8(130), []byte{129, 64, 128, 64, 63, 1})
	f.Fuzz(func(t *testing.T, chunkSize uint16, chunks uint8, ops []byte) {
		st, err := OpenMemory(&Options{MaxImageSize: 1 << 16, FlushEvery: 3})
		if err != nil {
			t.Fatal(err)
		}
		tr := Transfer{Image: "0123456789abcdef0123456789abcdef", Method: "deflate", ChunkSize: int(chunkSize), Chunks: int(chunks)}
		d, err := st.Begin(tr)
		if err != nil {
			return // rejected claims are fine
		}
		want := map[int]bool{}
		for len(ops) >= 2 {
			i, n := int(ops[0]), int(ops[1])
			ops = ops[2:]
			if d.WriteChunk(i, bytes.Repeat([]byte{byte(i)}, n)) == nil {
				if want[i] {
					t.Fatalf("chunk %d written twice", i)
				}
				want[i] = true
			}
		}
		if d.Count() != len(want) || len(d.Missing()) != tr.Chunks-len(want) {
			t.Fatalf("count %d, missing %d, want %d held of %d", d.Count(), len(d.Missing()), len(want), tr.Chunks)
		}
		for i := range want {
			got, err := d.ReadChunk(i)
			if err != nil || len(got) == 0 || got[0] != byte(i) {
				t.Fatalf("chunk %d read back %v, %v", i, got, err)
			}
		}
	})
}
