// Package slot is a receiver's A/B firmware slot store: two image slots,
// a crash-safe record of which one boots, and a resumable staging area for
// downloads whose chunks may arrive in any order.
//
// The life of an update:
//
//	d, _ := st.Begin(transfer)        // or resume: chunks already held stay held
//	d.WriteChunk(i, data)             // any order; Flush (or every FlushEvery chunks) makes them durable
//	st.Finish(d, decode, pub)         // decode + verify md5/size/signature into the inactive slot
//	st.Switch()                       // the new slot is pending: it boots next, on trial
//	st.Boot(now)                      // at every (re)start: counts boots, rolls back a failing image
//	st.Confirm(now)                   // the new image is healthy: it becomes the active slot
//	st.CheckDeadline(now)             // no confirmation in time: roll back
//
// Nothing in here reads the clock: time is passed in, so the store can sit
// inside a sans-IO state machine and a simulator.
//
// # Durability
//
// The A/B state is one small JSON file replaced atomically (temporary file,
// fsync, rename, directory fsync), so every state change is all or
// nothing. The order of writes keeps a bootable slot at every instant: a
// slot is marked Writing before its image is overwritten, marked Ready only
// after the image is verified and synced, and becomes pending only by the
// single atomic state write of Switch.
//
// Downloads are staged in staging.bin (chunk i at offset i*ChunkSize) with
// an append-only log of the chunks held. Flush first syncs staging.bin and
// only then appends and syncs the log records of the chunks written since
// the last flush. After a crash, at most the chunks written since the last
// Flush are missing and fetched again; a chunk is never marked present
// without its bytes on disk. Each log record carries a checksum and the log
// header the identity of its transfer, so a torn tail or a log left over
// from another transfer is never mistaken for held chunks.
package slot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"
)

// Sentinel errors.
var (
	ErrVerify     = errors.New("slot: verification failed")
	ErrCorrupt    = errors.New("slot: state file corrupt")
	ErrTransfer   = errors.New("slot: invalid transfer")
	ErrChunk      = errors.New("slot: invalid chunk")
	ErrDuplicate  = errors.New("slot: chunk already held")
	ErrIncomplete = errors.New("slot: download incomplete")
	ErrPending    = errors.New("slot: an update is pending confirmation")
	ErrNotReady   = errors.New("slot: no verified image to switch to")
	ErrNoPending  = errors.New("slot: no update pending")
	ErrNotBooted  = errors.New("slot: pending image has not booted")
	ErrDeadline   = errors.New("slot: confirm deadline passed")
	ErrReady      = errors.New("slot: image already verified in the inactive slot")
	ErrClosed     = errors.New("slot: download no longer current")
)

// Storage file names.
const (
	stateFile      = "state.json"
	slotAFile      = "slot-a.bin"
	slotBFile      = "slot-b.bin"
	stagingMeta    = "staging.json"
	stagingData    = "staging.bin"
	stagingLog     = "staging.log"
	maxStateSize   = 64 << 10
	maxStagingMeta = 64 << 10
)

// Defaults for Options.
const (
	DefaultMaxImageSize   = 16 << 20
	DefaultMaxChunkSize   = 64 << 10
	DefaultFlushEvery     = 32
	DefaultConfirmTimeout = 10 * time.Minute
	DefaultMaxBoots       = 3
)

// Options configures a Store. Zero fields take the defaults.
type Options struct {
	// MaxImageSize bounds the uncompressed image (default 16 MiB).
	MaxImageSize int64
	// MaxTransferSize bounds the transfer bytes (default MaxImageSize plus
	// 1/8, the worst-case expansion of heatshrink on incompressible data).
	MaxTransferSize int64
	// MaxChunkSize bounds one chunk (default 64 KiB; stock uses 1 KiB).
	MaxChunkSize int
	// FlushEvery makes WriteChunk flush after this many new chunks
	// (default 32). 1 makes every chunk durable before WriteChunk returns.
	FlushEvery int
	// ConfirmTimeout is how long a new image has, from its first boot, to
	// be confirmed (default 10 minutes).
	ConfirmTimeout time.Duration
	// MaxBoots is how many starts a pending image gets; the next start
	// rolls back (default 3).
	MaxBoots int
	// Factory describes the image in slot A when the store is created (a
	// serial-flashed node). The default, an empty MD5, is what a stock
	// node without /ota_fw.json reports.
	Factory Info
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MaxImageSize <= 0 {
		r.MaxImageSize = DefaultMaxImageSize
	}
	if r.MaxTransferSize <= 0 {
		r.MaxTransferSize = r.MaxImageSize + r.MaxImageSize/8
	}
	if r.MaxChunkSize <= 0 {
		r.MaxChunkSize = DefaultMaxChunkSize
	}
	if r.FlushEvery <= 0 {
		r.FlushEvery = DefaultFlushEvery
	}
	if r.ConfirmTimeout <= 0 {
		r.ConfirmTimeout = DefaultConfirmTimeout
	}
	if r.MaxBoots <= 0 {
		r.MaxBoots = DefaultMaxBoots
	}
	return r
}

// Store is an A/B slot store. It is safe for concurrent use.
type Store struct {
	mu   sync.Mutex
	fs   Storage
	opts Options
	st   State
	dl   *Download // the staged download, if any
	gen  int       // bumped whenever dl is replaced or dropped
}

// OpenDir opens (or creates) a store in directory dir.
func OpenDir(dir string, opts *Options) (*Store, error) {
	d, err := NewDir(dir)
	if err != nil {
		return nil, err
	}
	return Open(d, opts)
}

// OpenMemory opens a store on a fresh Memory.
func OpenMemory(opts *Options) (*Store, error) {
	return Open(NewMemory(), opts)
}

// Open opens the store kept in s, creating a fresh one (slot A holding
// opts.Factory) if s holds none. A staged download is picked up again; if
// its files are damaged they are discarded (the chunks are fetched again).
func Open(s Storage, opts *Options) (*Store, error) {
	st := &Store{fs: s, opts: opts.withDefaults()}
	if err := validInfo(st.opts.Factory, true); err != nil {
		return nil, fmt.Errorf("slot: factory image: %w", err)
	}
	data, err := readFile(s, stateFile, maxStateSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.st = State{Active: A, A: SlotState{Status: Good, Image: st.opts.Factory}, B: SlotState{Status: Empty}}
		if err := st.save(); err != nil {
			return nil, fmt.Errorf("slot: create state: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	default:
		state, err := decodeState(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
		}
		st.st = state
	}
	if err := st.loadStaging(); err != nil {
		return nil, err
	}
	return st, nil
}

// save persists the state atomically.
func (s *Store) save() error {
	return writeAtomic(s.fs, stateFile, encodeState(s.st))
}

// update applies change to a copy of the state and persists it; the
// in-memory state changes only if the write succeeded, so a failed write
// (a crash, in tests) never leaves memory ahead of disk.
func (s *Store) update(change func(st *State)) error {
	old := s.st
	change(&s.st)
	if err := s.save(); err != nil {
		s.st = old
		return fmt.Errorf("slot: save state: %w", err)
	}
	return nil
}

// State returns a copy of the persisted state.
func (s *Store) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Active returns the committed, confirmed image.
func (s *Store) Active() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Slot(s.st.Active).Image
}

// Current returns the image that runs after a (re)start and whether it is
// confirmed (false while it is pending, on trial).
func (s *Store) Current() (Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Slot(s.st.BootSlot()).Image, s.st.Pending == ""
}

// Deadline returns the confirm deadline of a pending image that has
// booted, for a caller scheduling its next wake-up.
func (s *Store) Deadline() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending == "" || s.st.Deadline.IsZero() {
		return time.Time{}, false
	}
	return s.st.Deadline, true
}

// Progress describes a staged download.
type Progress struct {
	Transfer Transfer
	Have     int // chunks held
	Chunks   int
}

// Status is a snapshot for reporting.
type Status struct {
	State
	// Boot is the slot that runs after a (re)start.
	Boot Slot
	// Download is the staged download, or nil.
	Download *Progress
}

// Status returns a snapshot of the store.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{State: s.st, Boot: s.st.BootSlot()}
	if s.dl != nil {
		out.Download = &Progress{Transfer: s.dl.t, Have: s.dl.count, Chunks: s.dl.t.Chunks}
	}
	return out
}

// Switch makes the verified image in the inactive slot pending: it boots
// next, on trial, until Confirm (or a rollback). It is one atomic state
// write, so a crash leaves either the old slot or the new verified one to
// boot.
func (s *Store) Switch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending != "" {
		return fmt.Errorf("%w: slot %s", ErrPending, s.st.Pending)
	}
	target := s.st.Active.Other()
	if ss := s.st.Slot(target); ss.Status != Ready {
		return fmt.Errorf("%w: slot %s is %s", ErrNotReady, target, ss.Status)
	}
	return s.update(func(st *State) {
		st.Pending = target
		st.Boots = 0
		st.Deadline = time.Time{}
	})
}

// Boot is called once at every (re)start. If an image is pending it counts
// the start; the first start sets the confirm deadline. A pending image
// that has used up MaxBoots starts, or whose deadline passed, is rolled
// back and the returned Result says so (the caller must then restart into
// the active slot). Otherwise Boot returns the zero Result.
func (s *Store) Boot(now time.Time) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending == "" {
		return Result{}, nil
	}
	boots := s.st.Boots + 1
	switch {
	case boots > s.opts.MaxBoots:
		return s.rollback(now, fmt.Sprintf("not confirmed after %d boots", s.opts.MaxBoots))
	case !s.st.Deadline.IsZero() && !now.Before(s.st.Deadline):
		return s.rollback(now, fmt.Sprintf("confirm deadline %s passed", s.st.Deadline.Format(time.RFC3339)))
	}
	err := s.update(func(st *State) {
		st.Boots = boots
		if st.Deadline.IsZero() {
			st.Deadline = now.Add(s.opts.ConfirmTimeout)
		}
	})
	return Result{}, err
}

// Confirm records that the pending image is healthy: it becomes the
// active slot and the old active slot is kept as Previous. Confirming
// after the deadline rolls back instead and returns an error wrapping
// ErrDeadline: the deadline is what the rest of the fleet was promised.
func (s *Store) Confirm(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending == "" {
		return ErrNoPending
	}
	if s.st.Boots == 0 {
		return fmt.Errorf("%w: slot %s was switched to but not started (call Boot)", ErrNotBooted, s.st.Pending)
	}
	if !now.Before(s.st.Deadline) {
		deadline := s.st.Deadline
		if _, err := s.rollback(now, fmt.Sprintf("confirmed at %s, after the deadline %s", now.Format(time.RFC3339), deadline.Format(time.RFC3339))); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s; rolled back to slot %s", ErrDeadline, deadline.Format(time.RFC3339), s.st.Active)
	}
	return s.update(func(st *State) {
		newSlot := st.Pending
		st.Previous = st.Active
		st.Active = newSlot
		st.slot(newSlot).Status = Good
		st.Pending = ""
		st.Boots = 0
		st.Deadline = time.Time{}
		st.Last = Result{State: Confirmed, Slot: newSlot, Image: st.Slot(newSlot).Image, At: now}
		st.Counter = max(st.Counter, st.Slot(newSlot).Image.Counter)
	})
}

// Counter is the security counter: the highest counter of the images
// confirmed in this store.
func (s *Store) Counter() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Counter
}

// CheckDeadline rolls a pending image back if its confirm deadline has
// passed, and returns Result{State: RolledBack} if it did (the caller must
// then restart into the active slot).
func (s *Store) CheckDeadline(now time.Time) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending == "" || s.st.Deadline.IsZero() || now.Before(s.st.Deadline) {
		return Result{}, nil
	}
	return s.rollback(now, fmt.Sprintf("not confirmed by the deadline %s", s.st.Deadline.Format(time.RFC3339)))
}

// Rollback abandons the pending image at once (for example a failed self
// test): it is marked bad with reason and the active slot boots next.
func (s *Store) Rollback(now time.Time, reason string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending == "" {
		return Result{}, ErrNoPending
	}
	return s.rollback(now, reason)
}

func (s *Store) rollback(now time.Time, reason string) (Result, error) {
	pending := s.st.Pending
	r := Result{State: RolledBack, Reason: reason, Slot: pending, Image: s.st.Slot(pending).Image, At: now}
	err := s.update(func(st *State) {
		ss := st.slot(pending)
		ss.Status = Bad
		ss.Reason = reason
		st.Pending = ""
		st.Boots = 0
		st.Deadline = time.Time{}
		st.Last = r
	})
	if err != nil {
		return Result{}, err
	}
	return r, nil
}

// OpenImage returns a reader of the image in slot sl (Good or Ready).
func (s *Store) OpenImage(sl Slot) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sl.valid() {
		return nil, fmt.Errorf("slot: no slot %q", sl)
	}
	ss := s.st.Slot(sl)
	if ss.Status != Good && ss.Status != Ready {
		return nil, fmt.Errorf("slot: slot %s is %s", sl, ss.Status)
	}
	f, err := s.fs.Open(sl.file())
	if err != nil {
		return nil, fmt.Errorf("slot: slot %s: %w", sl, err)
	}
	return readCloser{io.NewSectionReader(f, 0, ss.Image.Size), f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Close flushes the staged download and releases its files; the download
// is picked up again by the next Open. The Store must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dl == nil {
		return nil
	}
	err := errors.Join(s.dl.flush(), s.dl.closeFiles())
	s.dl = nil
	s.gen++
	return err
}

// validInfo checks the strings of an Info (bounded to keep state.json small).
func validInfo(in Info, allowEmptyMD5 bool) error {
	if !(allowEmptyMD5 && in.MD5 == "") && !isMD5(in.MD5) {
		return fmt.Errorf("md5 %q is not 32 lowercase hex digits", in.MD5)
	}
	for _, f := range []struct{ name, v string }{{"version", in.Version}, {"role", in.Role}, {"hardware", in.Hardware}} {
		if len(f.v) > maxLabelLen {
			return fmt.Errorf("%s is %d bytes, at most %d allowed", f.name, len(f.v), maxLabelLen)
		}
	}
	if in.Size < 0 {
		return fmt.Errorf("negative size %d", in.Size)
	}
	return nil
}

const maxLabelLen = 64

func isMD5(s string) bool { return isHex(s, 32) }

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

var (
	_ Storage = (*Dir)(nil)
	_ Storage = (*Memory)(nil)
)
