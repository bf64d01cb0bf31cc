package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// workHost is a fakeHost whose driver runs store work only when told.
type workHost struct {
	fakeHost
	work []mesh.Work
}

func (h *workHost) Defer(w mesh.Work) { h.work = append(h.work, w) }

// runWork does the store work asked so far (and what its answers ask).
func (h *workHost) runWork(now time.Time) {
	for len(h.work) > 0 {
		w := h.work[0]
		h.work = h.work[1:]
		w.Done(now, w.Do())
	}
}

func deliver(t *testing.T, r *Receiver, now time.Time, p protocol.Package) {
	t.Helper()
	raw := p.AppendJSON(nil)
	h, err := protocol.ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	r.HandlePackage(now, 1, h, raw)
}

// A chunk counts as held only once the store answered its write: a crash
// while a batch is being written resumes from what is on disk, and the
// chunks of that batch are fetched again.
func TestCrashWhileChunksAreWrittenResumesFromDisk(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	img := testImage(8*512, 9)
	offer, chunk := writeTestTransfer(img)
	boot := func() (*Receiver, *workHost, func()) {
		s, st := openSlotDir(t, dir, nil)
		r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st}, now)
		if err != nil {
			t.Fatal(err)
		}
		h := &workHost{fakeHost: fakeHost{id: 2}}
		r.Attach(h)
		return r, h, func() { s.Close() }
	}

	r, h, crash := boot()
	deliver(t, r, now, offer)
	h.runWork(now) // Begin
	for i := range 3 {
		deliver(t, r, now, chunk(i))
	}
	h.runWork(now) // chunk 0, then 1 and 2 in one batch
	for i := 3; i < 6; i++ {
		deliver(t, r, now, chunk(i))
	}
	if _, held, _, _ := r.Downloading(); held != 3 {
		t.Fatalf("holding %d chunks with 3 written and 3 more asked to be, want 3", held)
	}
	if len(h.work) != 1 {
		t.Fatalf("%d store works outstanding, want the write of chunk 3", len(h.work))
	}
	crash() // the write of chunk 3 (and 4, 5 waiting in memory) is lost

	r, h, _ = boot()
	deliver(t, r, now, offer)
	h.runWork(now)
	id, held, total, ok := r.Downloading()
	if !ok || id != "c" || held != 3 || total != 8 {
		t.Fatalf("after the restart downloading %q %d/%d (%v), want c 3/8 from disk", id, held, total, ok)
	}
	for _, i := range r.asked {
		if i < 3 {
			t.Fatalf("chunk %d is on disk and was asked for again (asked %v)", i, r.asked)
		}
	}
	for i := 3; i < 8; i++ {
		deliver(t, r, now, chunk(i))
		h.runWork(now)
	}
	if s := r.State(); s != StateSwitching {
		t.Fatalf("receiver %s after every chunk, want switching", s)
	}
}

// writeTestTransfer is a pipelined transfer of img in 512-byte chunks from
// distributor 1 to node 2.
func writeTestTransfer(img []byte) (*Offer, func(i int) *Chunk) {
	const dist = 1
	n := (len(img) + 511) / 512
	offer := &Offer{From: dist, Routing: int(protocol.RouteBroadcast), ID: "c", MD5: md5hexOf(img), Role: "sensor", Hardware: "ESP32",
		Size: int64(len(img)), Mode: string(ModePipelined), Method: "none", TSize: int64(len(img)), TMD5: md5hexOf(img),
		ChunkSize: 512, Chunks: n, Encoding: EncBase64}
	chunk := func(i int) *Chunk {
		return &Chunk{From: dist, Dest: 2, Routing: int(protocol.RouteSingle), ID: "c", Index: i,
			Data: encodePayload(EncBase64, img[i*512:min(len(img), (i+1)*512)])}
	}
	return offer, chunk
}

// The chunks waiting for the store are bounded: a chunk that does not fit
// the buffer is dropped, not waited for, and fetched again later.
func TestFullWriteBufferDropsChunks(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	img := testImage(8*512, 4)
	offer, chunk := writeTestTransfer(img)
	st := NewMemoryStore("")
	r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st, WriteBuffer: 2 * 512}, now)
	if err != nil {
		t.Fatal(err)
	}
	h := &workHost{fakeHost: fakeHost{id: 2}}
	r.Attach(h)
	deliver(t, r, now, offer)
	h.runWork(now)
	for i := range 4 {
		deliver(t, r, now, chunk(i)) // 0 is written, 1 waits, 2 and 3 do not fit
	}
	if got := r.Stats().WriteBufferFull; got != 2 {
		t.Fatalf("%d chunks dropped with a buffer of two, want 2", got)
	}
	h.runWork(now)
	if _, held, _, _ := r.Downloading(); held != 2 {
		t.Fatalf("holding %d chunks, want 2", held)
	}
	for i := 2; i < 8; i++ {
		deliver(t, r, now, chunk(i))
		h.runWork(now)
	}
	if s := r.State(); s != StateSwitching {
		t.Fatalf("receiver %s after the dropped chunks came again, want switching", s)
	}
}
