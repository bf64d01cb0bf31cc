package ota

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/slot"
)

// SlotStore adapts a slot.Store (the persistent A/B store of a real or
// simulated node) to the Store a Receiver uses. Decode defaults to the
// compress package's stream decompressors.
func SlotStore(s *slot.Store) Store { return &slotStore{s: s} }

type slotStore struct {
	s        *slot.Store
	reported time.Time // Last.At of the rollback already reported
}

// Decode turns a transfer encoded with method into the image, as a
// stream, with the compress package.
func Decode(method string, r io.Reader) (io.Reader, error) {
	m, err := compress.ParseMethod(method)
	if err != nil {
		return nil, err
	}
	return compress.NewDecompressor(m, r)
}

// Compress builds the transfer bytes of img for method with the compress
// package (DistributorConfig.Compress).
func Compress(method string, img []byte) ([]byte, error) {
	m, err := compress.ParseMethod(method)
	if err != nil {
		return nil, err
	}
	return compress.Compress(m, img)
}

type slotDownload struct{ *slot.Download }

func (d slotDownload) WriteChunk(i int, data []byte) error {
	err := d.Download.WriteChunk(i, data)
	if errors.Is(err, slot.ErrDuplicate) {
		return nil
	}
	return err
}

func (a *slotStore) Begin(t Transfer) (Download, error) {
	d, err := a.s.Begin(slot.Transfer(t))
	if errors.Is(err, slot.ErrReady) {
		// The image was verified into the inactive slot before the power
		// went, and not switched to: nothing to fetch, Finish has nothing
		// to do, Switch is next.
		return readyDownload{chunks: t.Chunks}, nil
	}
	if err != nil {
		return nil, err
	}
	return slotDownload{d}, nil
}

// readyDownload is a transfer whose image is already verified in the
// inactive slot: every chunk counts as held.
type readyDownload struct{ chunks int }

func (d readyDownload) Has(i int) bool                  { return i >= 0 && i < d.chunks }
func (d readyDownload) Count() int                      { return d.chunks }
func (d readyDownload) Done() bool                      { return true }
func (d readyDownload) WriteChunk(int, []byte) error    { return nil }
func (d readyDownload) Flush() error                    { return nil }
func (d readyDownload) ReadChunk(i int) ([]byte, error) { return nil, errImageReady }

var errImageReady = errors.New("ota: the image is verified in the inactive slot; its chunks are not kept")

func (a *slotStore) Finish(d Download, pub ed25519.PublicKey) error {
	if _, ok := d.(readyDownload); ok {
		return nil // verified when it became ready
	}
	sd, ok := d.(slotDownload)
	if !ok {
		return fmt.Errorf("ota: finish: download %T is not from this store", d)
	}
	err := a.s.Finish(sd.Download, Decode, pub)
	if errors.Is(err, slot.ErrVerify) {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	return err
}

func (a *slotStore) Switch() error { return a.s.Switch() }

func (a *slotStore) Boot(now time.Time) (bool, time.Time, error) {
	if _, err := a.s.Boot(now); err != nil {
		return false, time.Time{}, err
	}
	dl, ok := a.s.Deadline()
	return ok, dl, nil
}

func (a *slotStore) Confirm(now time.Time) error { return a.s.Confirm(now) }

func (a *slotStore) Rollback(now time.Time) error {
	// The receiver rolls back for a failed self test or a missed confirm
	// deadline, and Store.Rollback does not say which: name both rather
	// than record a wrong reason.
	_, err := a.s.Rollback(now, "not confirmed: self test failed or confirm deadline passed")
	return err
}

func (a *slotStore) Active() (string, bool) {
	in, confirmed := a.s.Current()
	return in.MD5, confirmed
}

func (a *slotStore) SecurityCounter() uint64 { return a.s.Counter() }

func (a *slotStore) LastRollback() (string, bool) {
	last := a.s.State().Last
	if last.State != slot.RolledBack || !last.At.After(a.reported) {
		return "", false
	}
	a.reported = last.At
	return last.Image.MD5, true
}

// Staged implements StagedStore.
func (a *slotStore) Staged() (Transfer, bool) {
	p := a.s.Status().Download
	if p == nil {
		return Transfer{}, false
	}
	return Transfer(p.Transfer), true
}
