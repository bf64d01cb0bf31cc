package ota

import (
	"errors"
	"time"
)

// Chunk writes are store work too (storework.go), batched as raft batches
// the entries of a Ready: a received chunk waits in memory, bounded by
// ReceiverConfig.WriteBuffer bytes, while the driver writes and flushes
// the batch before it; the next batch goes out when that one answered.
// A chunk counts as held (incoming.held: the bitmap the receiver reports,
// verifies and resumes from) only once its batch answered, so a crash
// never claims a chunk that is not on disk. A chunk that does not fit the
// buffer is dropped, and fetched again as a lost one is: the node never
// waits for its disk.

// chunkWrites are t's received chunks not yet held.
type chunkWrites struct {
	pending  map[int][]byte // waiting for the next batch
	inFlight map[int][]byte // the batch the driver is writing
	bytes    int            // in pending and inFlight
}

// busy reports whether chunks wait for the store.
func (w *chunkWrites) busy() bool { return len(w.pending)+len(w.inFlight) > 0 }

// chunk returns chunk i if it waits in memory.
func (w *chunkWrites) chunk(i int) ([]byte, bool) {
	if b, ok := w.inFlight[i]; ok {
		return b, true
	}
	b, ok := w.pending[i]
	return b, ok
}

// buffer keeps chunk i of t until the driver has written it, and has the
// driver write it now if no batch is being written. It reports false when
// the buffer is full (the chunk is dropped).
func (r *Receiver) buffer(now time.Time, t *incoming, i int, data []byte) bool {
	w := &t.writes
	if w.busy() && w.bytes+len(data) > r.cfg.WriteBuffer {
		return false
	}
	if w.pending == nil {
		w.pending = map[int][]byte{}
	}
	w.pending[i] = data
	w.bytes += len(data)
	if w.inFlight == nil {
		r.writeBatch(now, t)
	}
	return true
}

// writeBatch has the driver write and flush t's pending chunks as one
// work; written takes the answer.
func (r *Receiver) writeBatch(now time.Time, t *incoming) {
	w := &t.writes
	batch := w.pending
	w.pending, w.inFlight = nil, batch
	staged := t.staged
	idx := sortedKeys(batch)
	r.deferStore(now, func() error {
		var errs []error
		for _, i := range idx {
			if err := staged.WriteChunk(i, batch[i]); err != nil {
				errs = append(errs, err)
			}
		}
		if err := staged.Flush(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}, func(now time.Time, err error) { r.written(now, t, idx, err) })
}

// written takes the store's answer to a batch of t's chunks: they are
// held now (or, when the write failed, missing again, to be fetched
// again), and the next batch goes out.
func (r *Receiver) written(now time.Time, t *incoming, idx []int, err error) {
	w := &t.writes
	batch := w.inFlight
	w.inFlight = nil
	for _, i := range idx {
		w.bytes -= len(batch[i])
		if err != nil {
			t.have.Clear(i)
			continue
		}
		t.held.Set(i)
		t.bytes += int64(len(batch[i]))
	}
	if err != nil {
		r.cfg.Logger.Warn("ota receiver: write chunks", "transfer", t.id, "chunks", FormatRanges(idx), "err", err)
	}
	if r.cur != t {
		return // superseded meanwhile
	}
	if len(w.pending) > 0 {
		r.writeBatch(now, t)
	}
	r.afterStored(now, t)
}
