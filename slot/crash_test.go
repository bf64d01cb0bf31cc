package slot

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var errPowerCut = errors.New("power cut")

// powerCut returns a fault hook that lets n operations through and fails
// every one after that, as a machine that lost power would.
func powerCut(n int) (hook func(Op) error, at *Op, count *int) {
	at = new(Op)
	count = new(int)
	return func(op Op) error {
		if *count == n {
			*at = op
		}
		*count++
		if *count > n {
			return errPowerCut
		}
		return nil
	}, at, count
}

// driveUpdate takes a store from whatever state it is in to the new image
// confirmed, resuming where an earlier run stopped. It writes missing
// chunks newest first, so chunks arrive out of order.
func driveUpdate(s Storage, opts *Options, tr Transfer, data []byte) error {
	st, err := Open(s, opts)
	if err != nil {
		return err
	}
	now := t0
	state := st.State()
	if state.Pending == "" && state.Slot(state.Active).Image.MD5 == tr.Image {
		return nil // already done
	}
	if state.Pending == "" {
		d, err := st.Begin(tr)
		switch {
		case errors.Is(err, ErrReady):
		case err != nil:
			return err
		default:
			missing := d.Missing()
			slices.Reverse(missing)
			for _, i := range missing {
				if err := d.WriteChunk(i, chunk(data, tr.ChunkSize, i)); err != nil {
					return err
				}
			}
			if err := st.Finish(d, decode, nil); err != nil {
				return err
			}
		}
		if err := st.Switch(); err != nil {
			return err
		}
	}
	if st.State().Boots == 0 {
		if r, err := st.Boot(now); err != nil || r.State != "" {
			return fmt.Errorf("boot: %+v: %w", r, err)
		}
	}
	return st.Confirm(now.Add(time.Second))
}

// checkConsistent verifies what a store opened after a crash claims:
// the boot slot starts, every good or ready slot holds the bytes its
// record names, and every chunk counted as held has the right bytes.
func checkConsistent(t *testing.T, st *Store, tr Transfer, data []byte) {
	t.Helper()
	s := st.Status()
	if err := bootable(st, s.BootSlot()); err != nil {
		t.Errorf("boot slot %s not bootable: %v (state %+v)", s.BootSlot(), err, s.State)
	}
	for _, sl := range []Slot{A, B} {
		if ss := s.Slot(sl); ss.Status == Good || ss.Status == Ready {
			if err := bootable(st, sl); err != nil {
				t.Errorf("slot %s claims an image it does not hold: %v", sl, err)
			}
		}
	}
	if s.Download == nil {
		return
	}
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatalf("Begin after crash: %v", err)
	}
	for i := range tr.Chunks {
		if !d.Has(i) {
			continue
		}
		got, err := d.ReadChunk(i)
		if err != nil || !bytes.Equal(got, chunk(data, tr.ChunkSize, i)) {
			t.Errorf("chunk %d counted as held but holds %x (%v)", i, got, err)
		}
	}
	st.Close()
}

// TestCrashAtEveryStep cuts the power before each storage operation of a
// whole update (create store, download, flushes, finish, switch, boot,
// confirm), then reopens what survived, checks that a bootable slot and
// only truthful records remain, and completes the update. It runs twice:
// on a fresh store (the update goes into an empty slot B) and on a store
// that already went through two updates (the update overwrites the
// previous image kept in slot B).
func TestCrashAtEveryStep(t *testing.T) {
	for _, prior := range []bool{false, true} {
		t.Run(fmt.Sprintf("prior-update=%v", prior), func(t *testing.T) { testCrashAtEveryStep(t, prior) })
	}
}

func testCrashAtEveryStep(t *testing.T, prior bool) {
	img := testImage(3000, 20)
	tr, data := deflateTransfer(t, img, 97)
	opts := &Options{Factory: factory, FlushEvery: 3, ConfirmTimeout: time.Hour}
	fresh := func() *Memory {
		mem := NewMemory()
		if prior {
			// Two updates: B, then A; the test update overwrites B,
			// which holds the previous image.
			for i, seed := range []uint64{18, 19} {
				img := testImage(2500+i, seed)
				if err := driveUpdate(mem, opts, plainTransfer(img, 300), img); err != nil {
					t.Fatal(err)
				}
			}
			if s := mustOpen(t, mem, opts).State(); s.Active != A || s.Previous != B || s.B.Status != Good || s.B.Image.Size != 2500 {
				t.Fatalf("prior updates left %+v", s)
			}
		}
		return mem
	}

	// The operations of an undisturbed run, to know when we are done.
	hook, _, total := powerCut(1 << 30)
	if err := driveUpdate(WithFaults(fresh(), hook), opts, tr, data); err != nil {
		t.Fatal(err)
	}
	if *total < 50 {
		t.Fatalf("an update took only %d storage operations", *total)
	}
	for n := 0; n < *total; n++ {
		mem := fresh()
		hook, at, _ := powerCut(n)
		err := driveUpdate(WithFaults(mem, hook), opts, tr, data)
		if !errors.Is(err, errPowerCut) {
			t.Fatalf("cut before op %d (%s): run ended with %v, want the power cut", n, at, err)
		}
		mem.Crash()
		st, err := Open(mem, opts)
		if err != nil {
			t.Fatalf("cut before op %d (%s): reopen: %v", n, at, err)
		}
		checkConsistent(t, st, tr, data)
		if err := driveUpdate(mem, opts, tr, data); err != nil {
			t.Fatalf("cut before op %d (%s): completing the update: %v", n, at, err)
		}
		st, err = Open(mem, opts)
		if err != nil {
			t.Fatal(err)
		}
		s := st.State()
		if s.Pending != "" || st.Active().MD5 != tr.Image || s.Last.State != Confirmed {
			t.Fatalf("cut before op %d (%s): final state %+v", n, at, s)
		}
		if !bytes.Equal(readSlot(t, st, s.Active), img) {
			t.Fatalf("cut before op %d (%s): active slot does not hold the image", n, at)
		}
	}
}

// TestCrashDuringSwitch narrows the above to Switch: whatever survives,
// the node boots either the old image or the new verified one.
func TestCrashDuringSwitch(t *testing.T) {
	img := testImage(1000, 21)
	tr := plainTransfer(img, 100)
	for n := 0; ; n++ {
		mem := NewMemory()
		st := mustOpen(t, mem, &Options{Factory: factory})
		d, _ := st.Begin(tr)
		writeAll(t, d, img, 100, nil)
		if err := st.Finish(d, decode, nil); err != nil {
			t.Fatal(err)
		}
		hook, at, _ := powerCut(n)
		st = mustOpen(t, WithFaults(mem, hook), &Options{Factory: factory})
		err := st.Switch()
		if err == nil {
			if n < 3 {
				t.Fatalf("Switch finished after %d operations; the atomic write has more steps", n)
			}
			break
		}
		mem.Crash()
		st = mustOpen(t, mem, &Options{Factory: factory})
		s := st.State()
		switch s.BootSlot() {
		case A: // the old image: the switch did not happen; it can be retried
			if s.B.Status != Ready {
				t.Fatalf("cut before %s: slot B is %s", at, s.B.Status)
			}
			if err := st.Switch(); err != nil {
				t.Fatalf("cut before %s: retrying Switch: %v", at, err)
			}
		case B: // the switch happened
		}
		if err := bootable(st, st.State().BootSlot()); err != nil {
			t.Fatalf("cut before %s: %v", at, err)
		}
	}
}

// TestChunksNeverClaimedUnwritten cuts the power before every storage
// operation of a download with frequent flushes and checks that every
// chunk counted as held after the crash has its bytes.
func TestChunksNeverClaimedUnwritten(t *testing.T) {
	img := testImage(40*50, 22)
	tr := plainTransfer(img, 50)
	order := []int{39, 0, 17, 5, 22, 1, 38, 2, 3, 4, 6, 7, 8, 9, 10}
	opts := &Options{FlushEvery: 4}
	for n := 0; ; n++ {
		mem := NewMemory()
		hook, at, _ := powerCut(n)
		st, err := Open(WithFaults(mem, hook), opts)
		var failed error
		if err == nil {
			var d *Download
			d, failed = st.Begin(tr)
			for _, i := range order {
				if failed != nil {
					break
				}
				failed = d.WriteChunk(i, chunk(img, 50, i))
			}
			if failed == nil {
				failed = d.Flush()
			}
		} else {
			failed = err
		}
		if failed == nil {
			break
		}
		if !errors.Is(failed, errPowerCut) {
			t.Fatalf("cut before %s: %v", at, failed)
		}
		mem.Crash()
		st = mustOpen(t, mem, opts)
		held := 0
		if p := st.Status().Download; p != nil {
			held = p.Have
		}
		checkConsistent(t, st, tr, img)
		if held > len(order) {
			t.Fatalf("cut before %s: %d chunks held, only %d were written", at, held, len(order))
		}
	}
}
