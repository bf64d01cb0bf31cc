package ota

import (
	"bytes"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrVerify reports an image whose md5 or signature does not match.
var ErrVerify = errors.New("ota: image verification failed")

// MemoryStore is an in-memory A/B slot store for simulations and tests: it
// survives a simulated reboot as long as the caller keeps it (hand the
// same MemoryStore to the Receiver built after a restart). Decode turns a
// compressed transfer into the image; nil accepts only "none".
type MemoryStore struct {
	Decode          func(method string, r io.Reader) (io.Reader, error)
	ConfirmDeadline time.Duration // trial images must confirm within this, 5 min

	slots    [2]memSlot
	active   int
	next     int // slot to boot next
	trial    bool
	deadline time.Time
	staged   *memDownload
	verified bool
	rolled   string
	origin   *Origin
	counter  uint64

	// Chaos hooks for fault tests: CorruptChunk flips a byte of chunk i
	// when it is written (once per index, then cleared).
	CorruptChunk map[int]bool
	// CorruptTimes flips a byte of chunk i the next n times it is written.
	CorruptTimes map[int]int
	Writes       int // chunks written, for tests
}

type memSlot struct {
	image     []byte
	md5       string
	version   string // from the transfer that installed it; "" if unknown
	confirmed bool
	counter   uint64
}

// NewMemoryStore returns a store whose active slot runs an image with the
// given md5 ("" for unknown, like a serial-flashed node).
func NewMemoryStore(activeMD5 string) *MemoryStore {
	s := &MemoryStore{}
	s.slots[0] = memSlot{md5: activeMD5, confirmed: true}
	return s
}

type memDownload struct {
	t      Transfer
	mu     sync.Mutex // the driver writes off the step while the step reads
	chunks map[int][]byte
}

func (d *memDownload) Has(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.chunks[i]
	return ok
}

func (d *memDownload) Count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.chunks)
}

func (d *memDownload) Done() bool   { return d.Count() == d.t.Chunks }
func (d *memDownload) Flush() error { return nil }
func (d *memDownload) ReadChunk(i int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.chunks[i]
	if !ok {
		return nil, fmt.Errorf("ota: chunk %d not staged", i)
	}
	return b, nil
}
func (d *memDownload) WriteChunk(i int, data []byte) error {
	if i < 0 || i >= d.t.Chunks {
		return fmt.Errorf("ota: chunk %d out of range (%d chunks)", i, d.t.Chunks)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.chunks[i] = bytes.Clone(data)
	return nil
}

type memChunkWriter struct {
	*memDownload
	s *MemoryStore
}

func (w memChunkWriter) WriteChunk(i int, data []byte) error {
	w.s.Writes++
	corrupt := w.s.CorruptChunk[i]
	delete(w.s.CorruptChunk, i)
	if w.s.CorruptTimes[i] > 0 {
		w.s.CorruptTimes[i]--
		corrupt = true
	}
	if corrupt {
		data = bytes.Clone(data)
		data[0] ^= 0xff
	}
	return w.memDownload.WriteChunk(i, data)
}

// Begin implements Store.
func (s *MemoryStore) Begin(t Transfer) (Download, error) {
	if s.staged == nil || !sameTransfer(s.staged.t, t) {
		s.staged = &memDownload{t: t, chunks: map[int][]byte{}}
	}
	return memChunkWriter{s.staged, s}, nil
}

func sameTransfer(a, b Transfer) bool {
	return a.Image == b.Image && a.TransferMD5 == b.TransferMD5 && a.ChunkSize == b.ChunkSize && a.Chunks == b.Chunks && a.Method == b.Method
}

// Finish implements Store.
func (s *MemoryStore) Finish(d Download, pub ed25519.PublicKey) error {
	st := s.staged
	if st == nil || !st.Done() {
		return errors.New("ota: finish: transfer incomplete")
	}
	var buf bytes.Buffer
	for i := 0; i < st.t.Chunks; i++ {
		buf.Write(st.chunks[i])
	}
	img := buf.Bytes()
	if st.t.Method != "" && st.t.Method != "none" {
		if s.Decode == nil {
			s.staged = nil
			return fmt.Errorf("ota: no decoder for %q", st.t.Method)
		}
		r, err := s.Decode(st.t.Method, bytes.NewReader(img))
		if err == nil {
			img, err = io.ReadAll(r)
		}
		if err != nil {
			s.staged = nil
			return fmt.Errorf("%w: decode %s: %v", ErrVerify, st.t.Method, err)
		}
	}
	sum := md5.Sum(img)
	if got := hex.EncodeToString(sum[:]); got != st.t.Image {
		s.staged = nil
		return fmt.Errorf("%w: md5 %s, want %s", ErrVerify, got, st.t.Image)
	}
	if got := sha256.Sum256(img); st.t.SHA256 != "" && hex.EncodeToString(got[:]) != st.t.SHA256 {
		s.staged = nil
		return fmt.Errorf("%w: sha256 %x, the signed manifest says %s", ErrVerify, got, st.t.SHA256)
	}
	if pub != nil && !ed25519.Verify(pub, img, st.t.Signature) {
		s.staged = nil
		return fmt.Errorf("%w: bad signature", ErrVerify)
	}
	other := 1 - s.active
	s.slots[other] = memSlot{image: img, md5: st.t.Image, version: st.t.Version, counter: st.t.Counter}
	s.staged = nil
	s.verified = true
	return nil
}

// Switch implements Store.
func (s *MemoryStore) Switch() error {
	if !s.verified {
		return errors.New("ota: switch: no verified image")
	}
	s.verified = false
	s.next = 1 - s.active
	return nil
}

// Boot implements Store.
func (s *MemoryStore) Boot(now time.Time) (bool, time.Time, error) {
	if s.trial && !now.Before(s.deadline) {
		// The trial image never confirmed: the bootloader falls back.
		s.rolled = s.slots[s.active].md5
		s.active, s.next, s.trial = 1-s.active, 1-s.active, false
	}
	if s.next != s.active {
		s.active = s.next
		s.trial = true
		d := s.ConfirmDeadline
		if d <= 0 {
			d = 5 * time.Minute
		}
		s.deadline = now.Add(d)
	}
	return s.trial, s.deadline, nil
}

// Confirm implements Store.
func (s *MemoryStore) Confirm(now time.Time) error {
	if !s.trial {
		return nil
	}
	s.trial = false
	s.slots[s.active].confirmed = true
	s.counter = max(s.counter, s.slots[s.active].counter)
	return nil
}

// SecurityCounter implements Store.
func (s *MemoryStore) SecurityCounter() uint64 { return s.counter }

// SetSecurityCounter sets the counter, as if an image with that counter
// had been confirmed (tests).
func (s *MemoryStore) SetSecurityCounter(c uint64) { s.counter = c }

// Rollback implements Store.
func (s *MemoryStore) Rollback(now time.Time) error {
	if !s.trial {
		return errors.New("ota: rollback: no trial image")
	}
	s.rolled = s.slots[s.active].md5
	s.active, s.next, s.trial = 1-s.active, 1-s.active, false
	return nil
}

// Active implements Store.
func (s *MemoryStore) Active() (string, bool) {
	sl := s.slots[s.active]
	return sl.md5, sl.confirmed
}

// ActiveVersion is the version of the running image as its transfer named
// it: "" for the image the store started with, or when the transfer did
// not say (stock announces carry no version).
func (s *MemoryStore) ActiveVersion() string { return s.slots[s.active].version }

// LastRollback implements Store; it reports a rollback once.
func (s *MemoryStore) LastRollback() (string, bool) {
	r := s.rolled
	s.rolled = ""
	return r, r != ""
}

// Image returns the active slot's bytes.
func (s *MemoryStore) Image() []byte { return s.slots[s.active].image }

func md5hexOf(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// Staged implements StagedStore.
func (s *MemoryStore) Staged() (Transfer, bool) {
	if s.staged == nil {
		return Transfer{}, false
	}
	return s.staged.t, true
}

// StagedChunks is how many chunks of the staged download are written, of
// how many (0, 0 when nothing is staged): a benchmark's progress figure.
func (s *MemoryStore) StagedChunks() (written, total int) {
	if s.staged == nil {
		return 0, 0
	}
	return s.staged.Count(), s.staged.t.Chunks
}

// SetOrigin implements OriginStore.
func (s *MemoryStore) SetOrigin(o Origin) error {
	s.origin = &o
	return nil
}

// Origin implements OriginStore.
func (s *MemoryStore) Origin() (Origin, bool) {
	if s.origin == nil {
		return Origin{}, false
	}
	return *s.origin, true
}
