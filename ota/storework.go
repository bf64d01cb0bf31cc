package ota

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// Persistence out of the step, as raft treats writes: the slow store
// operations (opening the staged download, flushing it, decompressing and
// checking the whole image, switching slots, confirming or rolling back
// the trial, booting the new slot: fsyncs, MD5, SHA-256, signatures) are
// asked of the driver as mesh.Work, and their result comes back as an
// input. The state waits for the answer (verifying stays verifying until
// Finish answered, switching until Confirm did); meanwhile the node keeps
// relaying and syncing, and the receiver leaves the store alone: it takes
// up no OTA package (offers and announces repeat, children ask again, a
// chunk missed while a download opens is fetched again). Chunk writes
// (chunkwrites.go), repair reads (repairs.go) and flushes nothing waits
// for go to the driver too, in order, without holding the receiver up.

// storeWork has the driver run do off the step, then calls done with its
// result. A host that runs no work off the step (a test's fake) gets it
// done inline.
func (r *Receiver) storeWork(now time.Time, do func() error, done func(now time.Time, err error)) {
	r.storeBusy = true
	r.deferStore(now, do, func(now time.Time, err error) {
		r.storeBusy = false
		done(now, err)
	})
}

// deferStore has the driver run do off the step, after the store work
// asked before, and calls done with its result; the receiver goes on
// meanwhile (chunk writes, flushes nothing waits for). done may be nil.
func (r *Receiver) deferStore(now time.Time, do func() error, done func(now time.Time, err error)) {
	if done == nil {
		done = func(time.Time, error) {}
	}
	w := mesh.Work{Do: do, Done: done}
	if wh, ok := r.host.(mesh.WorkHost); ok {
		wh.Defer(w)
		return
	}
	w.Done(now, w.Do())
}

// storeStepError says which step of a store job failed.
type storeStepError struct {
	step string // flush, verify or switch
	err  error
}

func (e *storeStepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *storeStepError) Unwrap() error { return e.err }

// verify asks the store to flush, decode and verify the complete transfer
// t into the inactive slot and to switch to it; verified takes the answer.
func (r *Receiver) verify(now time.Time, t *incoming) {
	r.setState(now, StateVerifying, "")
	pub := r.cfg.PublicKey
	if t.manifest != nil {
		pub = nil // the signed manifest's SHA-256 binds the image
	}
	store, staged := r.cfg.Store, t.staged
	r.storeWork(now, func() error {
		if err := staged.Flush(); err != nil {
			return &storeStepError{"flush", err}
		}
		if err := store.Finish(staged, pub); err != nil {
			return &storeStepError{"verify", err}
		}
		if err := store.Switch(); err != nil {
			return &storeStepError{"switch", err}
		}
		return nil
	}, func(now time.Time, err error) { r.verified(now, t, err) })
}

// verified goes on from the store's answer to verify: retry a transfer
// that failed verification, or report the switch and boot the new image.
func (r *Receiver) verified(now time.Time, t *incoming, err error) {
	step := ""
	if se, ok := err.(*storeStepError); ok {
		step, err = se.step, se.err
	}
	switch step {
	case "flush":
		r.fail(now, fmt.Errorf("ota: flush %s: %w", t.id, err))
		return
	case "verify":
		again := r.verifyFailed(now, t.id)
		r.fail(now, fmt.Errorf("ota: verify %s: %w", t.id, err))
		if again {
			// The staged chunks were discarded; fetch them again.
			t.have = NewBitmap(t.offer.Chunks)
			t.held = NewBitmap(t.offer.Chunks)
			t.bytes = 0
			t.staged = nil
			t.fetch.discard()
			r.cur = nil
			r.start(now, t)
		}
		return
	}
	r.setState(now, StateSwitching, "")
	if step == "switch" {
		r.fail(now, fmt.Errorf("ota: switch to %s: %w", t.offer.MD5, err))
		return
	}
	r.report(now, t)
	r.cur = nil
	r.repairs.done = t
	r.pending = nil
	r.trialOrigin = nil
	var origin *Origin
	if t.viaOffer {
		origin = &Origin{Image: t.offer.MD5, Transfer: t.id, Distributor: t.dist}
	}
	// Record the origin, then restart into the new image or boot it in
	// place: store work, the restart only once the origin is durable.
	store, log, restart := r.cfg.Store, r.cfg.Logger, r.cfg.Restart
	var b bootState
	r.storeWork(now, func() error {
		if keep, ok := store.(OriginStore); ok && origin != nil {
			if err := keep.SetOrigin(*origin); err != nil {
				log.Warn("ota receiver: record the origin of the new image", "transfer", t.id, "err", err)
			}
		}
		if restart != nil {
			return nil
		}
		var err error
		b, err = bootStore(store, now)
		return err
	}, func(now time.Time, err error) {
		if restart != nil {
			restart(now)
			return
		}
		if err != nil {
			r.fail(now, err)
			return
		}
		r.booted(now, b)
		r.trialOrigin = origin
	})
}
