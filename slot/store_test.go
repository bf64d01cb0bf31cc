package slot

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var factory = Info{MD5: "0123456789abcdef0123456789abcdef", Version: "1.0.0", Role: "sensor", Hardware: "ESP32"}

func backends(t *testing.T) map[string]func() Storage {
	return map[string]func() Storage{
		"memory": func() Storage { return NewMemory() },
		"dir": func() Storage {
			d, err := NewDir(filepath.Join(t.TempDir(), "slots"))
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
	}
}

func TestUpdateLifecycle(t *testing.T) {
	for name, newStorage := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := mustOpen(t, newStorage(), &Options{Factory: factory})
			if got := st.Active(); got != factory {
				t.Fatalf("fresh store active = %+v, want the factory image", got)
			}
			img := testImage(10_000, 1)
			tr := plainTransfer(img, 1024)
			d, err := st.Begin(tr)
			if err != nil {
				t.Fatal(err)
			}
			// Broadcast order: any permutation.
			order := rand.New(rand.NewPCG(7, 7)).Perm(tr.Chunks)
			writeAll(t, d, img, 1024, order)
			if !d.Done() || d.Count() != tr.Chunks || len(d.Missing()) != 0 {
				t.Fatalf("after all chunks: done %v count %d missing %v", d.Done(), d.Count(), d.Missing())
			}
			if err := st.Finish(d, decode, nil); err != nil {
				t.Fatal(err)
			}
			s := st.State()
			if s.B.Status != Ready || s.B.Image.MD5 != tr.Image || s.B.Image.Size != int64(len(img)) || s.Pending != "" {
				t.Fatalf("after Finish: %+v", s)
			}
			if st.Status().Download != nil {
				t.Error("staging kept after a successful Finish")
			}
			if err := d.WriteChunk(0, chunk(img, 1024, 0)); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteChunk after Finish: %v", err)
			}
			if !bytes.Equal(readSlot(t, st, B), img) {
				t.Fatal("slot B does not hold the image")
			}
			if err := st.Switch(); err != nil {
				t.Fatal(err)
			}
			if cur, ok := st.Current(); cur.MD5 != tr.Image || ok {
				t.Errorf("Current after Switch = %+v confirmed %v", cur, ok)
			}
			if st.Active() != factory {
				t.Error("Switch changed the committed image")
			}
			if r, err := st.Boot(t0); err != nil || r != (Result{}) {
				t.Fatalf("Boot = %+v, %v", r, err)
			}
			if dl, ok := st.Deadline(); !ok || !dl.Equal(t0.Add(DefaultConfirmTimeout)) {
				t.Errorf("Deadline = %v %v", dl, ok)
			}
			if err := st.Confirm(t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			s = st.State()
			want := Info{MD5: tr.Image, Version: "2.0.0", Role: "sensor", Hardware: "ESP32", Size: int64(len(img))}
			if s.Active != B || s.Previous != A || s.Pending != "" || s.B.Status != Good || st.Active() != want {
				t.Errorf("after Confirm: %+v", s)
			}
			if s.Last.State != Confirmed || s.Last.Slot != B || !s.Last.At.Equal(t0.Add(time.Minute)) {
				t.Errorf("Last = %+v", s.Last)
			}
			// A second update goes into slot A and clears Previous.
			img2 := testImage(3000, 2)
			d, err = st.Begin(plainTransfer(img2, 512))
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, d, img2, 512, nil)
			if err := st.Finish(d, decode, nil); err != nil {
				t.Fatal(err)
			}
			if s := st.State(); s.A.Status != Ready || s.Previous != "" || s.Active != B {
				t.Errorf("second Finish: %+v", s)
			}
			if !bytes.Equal(readSlot(t, st, A), img2) {
				t.Error("slot A does not hold the second image")
			}
		})
	}
}

func TestStatePersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slots")
	st, err := OpenDir(dir, &Options{Factory: factory})
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(2000, 3)
	d, _ := st.Begin(plainTransfer(img, 256))
	writeAll(t, d, img, 256, nil)
	if err := st.Finish(d, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Boot(t0); err != nil {
		t.Fatal(err)
	}
	before := st.State()
	st.Close()
	// Factory only applies to a new store.
	st2, err := OpenDir(dir, &Options{Factory: Info{MD5: "ffffffffffffffffffffffffffffffff"}})
	if err != nil {
		t.Fatal(err)
	}
	after := st2.State()
	if after.Pending != B || after.Boots != 1 || !after.Deadline.Equal(before.Deadline) || after.A.Image != factory || after.B != before.B {
		t.Errorf("state after reopen:\n got %+v\nwant %+v", after, before)
	}
}

func TestDeflateTransfer(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	img := bytes.Repeat([]byte("painlessMesh firmware "), 2000)
	tr, data := deflateTransfer(t, img, 700)
	if tr.TransferSize >= tr.ImageSize {
		t.Fatalf("deflate did not shrink the test image: %d >= %d", tr.TransferSize, tr.ImageSize)
	}
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, d, data, 700, nil)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readSlot(t, st, B), img) {
		t.Error("decoded slot differs from the image")
	}
}

func TestFinishNeedsDecoder(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	img := testImage(1000, 4)
	tr, data := deflateTransfer(t, img, 100)
	d, _ := st.Begin(tr)
	writeAll(t, d, data, 100, nil)
	err := st.Finish(d, nil, nil)
	if err == nil || errors.Is(err, ErrVerify) || err.Error() != `slot: finish: no decoder for method "deflate"` {
		t.Errorf("Finish without decoder: %v", err)
	}
	// Nothing was discarded: a second try with a decoder succeeds.
	if !d.Done() {
		t.Fatal("chunks lost")
	}
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
}

func TestFinishForeignDownload(t *testing.T) {
	a := mustOpen(t, NewMemory(), nil)
	b := mustOpen(t, NewMemory(), nil)
	img := testImage(100, 35)
	d, _ := a.Begin(plainTransfer(img, 100))
	writeAll(t, d, img, 100, nil)
	if err := b.Finish(d, decode, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Finish on another store: %v", err)
	}
	if err := a.Finish(d, decode, nil); err != nil {
		t.Errorf("Finish on its own store: %v", err)
	}
}

func TestFinishIncomplete(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	img := testImage(1000, 5)
	d, _ := st.Begin(plainTransfer(img, 100))
	writeAll(t, d, img, 100, []int{0, 1, 2})
	err := st.Finish(d, decode, nil)
	if !errors.Is(err, ErrIncomplete) || err.Error() != "slot: download incomplete: 3 of 10 chunks held" {
		t.Errorf("Finish incomplete: %v", err)
	}
	if err := st.Switch(); !errors.Is(err, ErrNotReady) || err.Error() != "slot: no verified image to switch to: slot B is empty" {
		t.Errorf("Switch without image: %v", err)
	}
}

func TestResumeAfterCrash(t *testing.T) {
	mem := NewMemory()
	opts := &Options{FlushEvery: 1000}
	st := mustOpen(t, mem, opts)
	img := testImage(20*128, 6)
	tr := plainTransfer(img, 128)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 128, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	writeAll(t, d, img, 128, []int{10, 11, 12, 19})
	mem.Crash() // chunks 10-12 and 19 were never flushed

	st = mustOpen(t, mem, opts)
	if p := st.Status().Download; p == nil || p.Have != 10 {
		t.Fatalf("after crash the staged download is %+v, want 10 chunks", p)
	}
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if want := i < 10; d.Has(i) != want {
			t.Errorf("Has(%d) = %v, want %v", i, d.Has(i), want)
		}
	}
	missing := d.Missing()
	if want := []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}; !slices.Equal(missing, want) {
		t.Fatalf("Missing = %v, want %v", missing, want)
	}
	if got := d.NextMissing(0); got != 10 {
		t.Errorf("NextMissing(0) = %d", got)
	}
	// Fetch only what is missing; anything else would be a duplicate.
	writeAll(t, d, img, 128, missing)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readSlot(t, st, B), img) {
		t.Error("resumed image differs")
	}
}

func TestResumeAfterCleanRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slots")
	opts := &Options{FlushEvery: 1000}
	st, err := OpenDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(10*64, 7)
	tr := plainTransfer(img, 64)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 64, []int{9, 3, 5})
	if err := st.Close(); err != nil { // a clean shutdown flushes
		t.Fatal(err)
	}
	st, err = OpenDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err = st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Missing(); !slices.Equal(got, []int{0, 1, 2, 4, 6, 7, 8}) {
		t.Fatalf("Missing after restart = %v", got)
	}
	if c, err := d.ReadChunk(9); err != nil || !bytes.Equal(c, chunk(img, 64, 9)) {
		t.Errorf("ReadChunk(9) = %x, %v", c, err)
	}
	writeAll(t, d, img, 64, d.Missing())
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBeginResetsOnOtherTransfer(t *testing.T) {
	mem := NewMemory()
	st := mustOpen(t, mem, nil)
	img := testImage(1000, 8)
	tr := plainTransfer(img, 100)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 100, []int{0, 1, 2})

	other := testImage(1000, 9)
	d2, err := st.Begin(plainTransfer(other, 100))
	if err != nil {
		t.Fatal(err)
	}
	if d2.Count() != 0 {
		t.Errorf("new transfer starts with %d chunks", d2.Count())
	}
	if err := d.WriteChunk(3, chunk(img, 100, 3)); !errors.Is(err, ErrClosed) {
		t.Errorf("old download still writable: %v", err)
	}
	// Same md5, different chunking: a different layout, so a reset too.
	d3, err := st.Begin(plainTransfer(other, 200))
	if err != nil || d3.Count() != 0 {
		t.Fatalf("rechunked: %v count %d", err, d3.Count())
	}
	writeAll(t, d3, other, 200, []int{4})
	// The log of the old layout must not count after a crash either.
	d3.Flush()
	mem.Crash()
	st = mustOpen(t, mem, nil)
	d4, _ := st.Begin(plainTransfer(other, 100))
	if d4.Count() != 0 {
		t.Errorf("chunks of another layout credited: %d", d4.Count())
	}
}

func TestBeginSameIdentityUpdatesLabels(t *testing.T) {
	mem := NewMemory()
	st := mustOpen(t, mem, nil)
	img := testImage(1000, 10)
	tr := plainTransfer(img, 100)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 100, []int{0, 1})
	d.Flush()
	tr.Version = "2.0.1"
	tr.Signature = bytes.Repeat([]byte{1}, 64)
	d2, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	if d2 != d || d2.Count() != 2 || d2.Transfer().Version != "2.0.1" {
		t.Errorf("resume with new labels: same %v count %d version %q", d2 == d, d2.Count(), d2.Transfer().Version)
	}
	mem.Crash()
	st = mustOpen(t, mem, nil)
	if p := st.Status().Download; p == nil || p.Have != 2 || p.Transfer.Version != "2.0.1" || len(p.Transfer.Signature) != 64 {
		t.Errorf("after crash: %+v", p)
	}
}

func TestCorruptChunkThenRetry(t *testing.T) {
	st := mustOpen(t, NewMemory(), &Options{Factory: factory})
	img := testImage(5000, 11)
	tr := plainTransfer(img, 500)
	d, _ := st.Begin(tr)
	for i := range tr.Chunks {
		c := slices.Clone(chunk(img, 500, i))
		if i == 4 {
			c[17] ^= 0x40 // damaged in transit
		}
		if err := d.WriteChunk(i, c); err != nil {
			t.Fatal(err)
		}
	}
	err := st.Finish(d, decode, nil)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("Finish with a corrupt chunk: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "slot: verification failed: image md5 ") || !strings.HasSuffix(err.Error(), ", announced "+tr.Image) {
		t.Errorf("message: %v", err)
	}
	s := st.Status()
	if s.B.Status != Bad || s.Pending != "" || s.Last.State != Failed || s.Last.Image.MD5 != tr.Image || s.Download != nil {
		t.Errorf("after failed verification: %+v", s)
	}
	if err := st.Switch(); !errors.Is(err, ErrNotReady) {
		t.Errorf("Switch after failed verification: %v", err)
	}
	if cur, ok := st.Current(); cur != factory || !ok {
		t.Errorf("Current = %+v %v, want the factory image", cur, ok)
	}
	// The retry starts from scratch and succeeds.
	d, err = st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	if d.Count() != 0 {
		t.Fatalf("retry kept %d chunks", d.Count())
	}
	writeAll(t, d, img, 500, nil)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
}

func TestVerificationFailures(t *testing.T) {
	img := testImage(3000, 12)
	zeros := make([]byte, 200_000)
	tests := []struct {
		name  string
		opts  *Options
		setup func(t *testing.T) (Transfer, []byte)
		msg   string
	}{
		{"image size", nil, func(t *testing.T) (Transfer, []byte) {
			tr, data := deflateTransfer(t, img, 512)
			tr.ImageSize = 2999
			return tr, data
		}, "slot: verification failed: decoded image exceeds 2999 bytes"},
		{"short image", nil, func(t *testing.T) (Transfer, []byte) {
			tr, data := deflateTransfer(t, img, 512)
			tr.ImageSize = 3001
			return tr, data
		}, "slot: verification failed: image is 3000 bytes, announced 3001"},
		{"transfer md5", nil, func(t *testing.T) (Transfer, []byte) {
			tr, data := deflateTransfer(t, img, 512)
			tr.TransferMD5 = md5hex([]byte("other"))
			return tr, data
		}, "slot: verification failed: transfer md5 " + func() string { _, d := deflateTransfer(t, img, 512); return md5hex(d) }() + ", announced " + md5hex([]byte("other"))},
		{"not deflate", nil, func(t *testing.T) (Transfer, []byte) {
			data := bytes.Repeat([]byte{0xff}, 1000)
			return Transfer{Image: md5hex(img), Method: "deflate", TransferSize: 1000, ChunkSize: 512, Chunks: 2}, data
		}, "slot: verification failed: decode deflate: flate: corrupt input before offset 1"},
		{"unknown method", nil, func(t *testing.T) (Transfer, []byte) {
			return Transfer{Image: md5hex(img), Method: "lzma", TransferSize: 3000, ChunkSize: 512, Chunks: 6}, img
		}, `slot: verification failed: decode lzma: unsupported method "lzma"`},
		{"decompression bomb", &Options{MaxImageSize: 64 << 10}, func(t *testing.T) (Transfer, []byte) {
			tr, data := deflateTransfer(t, zeros, 512)
			tr.ImageSize = 0 // unknown: only the store limit applies
			return tr, data
		}, "slot: verification failed: decoded image exceeds 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustOpen(t, NewMemory(), tt.opts)
			tr, data := tt.setup(t)
			d, err := st.Begin(tr)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, d, data, tr.ChunkSize, nil)
			err = st.Finish(d, decode, nil)
			if !errors.Is(err, ErrVerify) || err.Error() != tt.msg {
				t.Errorf("Finish:\n got %v\nwant %s", err, tt.msg)
			}
			if s := st.State(); s.B.Status != Bad || s.Last.State != Failed {
				t.Errorf("state: %+v", s)
			}
		})
	}
}

func TestSignatures(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	otherPub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	img := testImage(4000, 13)
	sig := ed25519.Sign(priv, img)
	tests := []struct {
		name string
		sig  []byte
		pub  ed25519.PublicKey
		msg  string
	}{
		{"valid", sig, pub, ""},
		{"no key configured", nil, nil, ""},
		{"wrong key", sig, otherPub, "slot: verification failed: ed25519 signature does not verify"},
		{"tampered signature", append([]byte{sig[0] ^ 1}, sig[1:]...), pub, "slot: verification failed: ed25519 signature does not verify"},
		{"unsigned", nil, pub, "slot: verification failed: image is not signed and a public key is configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustOpen(t, NewMemory(), nil)
			tr := plainTransfer(img, 1000)
			tr.Signature = tt.sig
			d, _ := st.Begin(tr)
			writeAll(t, d, img, 1000, nil)
			err := st.Finish(d, decode, tt.pub)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Switch(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrVerify) || err.Error() != tt.msg {
				t.Errorf("got %v, want %s", err, tt.msg)
			}
			if err := st.Switch(); !errors.Is(err, ErrNotReady) {
				t.Errorf("switched to a badly signed image: %v", err)
			}
		})
	}
	st := mustOpen(t, NewMemory(), nil)
	d, _ := st.Begin(plainTransfer(img, 1000))
	writeAll(t, d, img, 1000, nil)
	if err := st.Finish(d, decode, pub[:10]); err == nil || errors.Is(err, ErrVerify) || !d.Done() {
		t.Errorf("short public key: %v (chunks kept: %v)", err, d.Done())
	}
}

// installPending takes a fresh store to an image switched to and booted once.
func installPending(t *testing.T, opts *Options) (*Store, Transfer) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	opts.Factory = factory
	st := mustOpen(t, NewMemory(), opts)
	img := testImage(2048, 14)
	tr := plainTransfer(img, 512)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 512, nil)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Boot(t0); err != nil {
		t.Fatal(err)
	}
	return st, tr
}

func assertRolledBack(t *testing.T, st *Store, r Result, reason string) {
	t.Helper()
	if r.State != RolledBack || r.Reason != reason || r.Slot != B {
		t.Errorf("result = %+v, want rolled back from B: %s", r, reason)
	}
	s := st.State()
	if s.Active != A || s.Pending != "" || s.B.Status != Bad || s.B.Reason != reason || s.Last != r {
		t.Errorf("state after rollback: %+v", s)
	}
	if cur, ok := st.Current(); cur != factory || !ok {
		t.Errorf("Current = %+v %v, want the factory image", cur, ok)
	}
	if err := bootable(st, s.BootSlot()); err != nil {
		t.Error(err)
	}
}

func TestRollbackAfterDeadline(t *testing.T) {
	st, tr := installPending(t, &Options{ConfirmTimeout: 5 * time.Minute})
	deadline := t0.Add(5 * time.Minute)
	if r, err := st.CheckDeadline(deadline.Add(-time.Nanosecond)); err != nil || r != (Result{}) {
		t.Fatalf("before the deadline: %+v, %v", r, err)
	}
	r, err := st.CheckDeadline(deadline)
	if err != nil {
		t.Fatal(err)
	}
	assertRolledBack(t, st, r, "not confirmed by the deadline 2026-11-22T12:05:00Z")
	if r.Image.MD5 != tr.Image || !r.At.Equal(deadline) {
		t.Errorf("result image %s at %v", r.Image.MD5, r.At)
	}
	if _, ok := st.Deadline(); ok {
		t.Error("deadline still set after rollback")
	}
	// Nothing more to do, and a new download may start.
	if r, err := st.CheckDeadline(deadline.Add(time.Hour)); err != nil || r != (Result{}) {
		t.Errorf("second CheckDeadline: %+v, %v", r, err)
	}
	if _, err := st.Begin(tr); err != nil {
		t.Errorf("Begin after rollback: %v", err)
	}
}

func TestRollbackAfterBootLoop(t *testing.T) {
	st, _ := installPending(t, &Options{MaxBoots: 3})
	for i := 2; i <= 3; i++ {
		if r, err := st.Boot(t0.Add(time.Duration(i) * time.Second)); err != nil || r != (Result{}) {
			t.Fatalf("boot %d: %+v, %v", i, r, err)
		}
		if st.State().Boots != i {
			t.Fatalf("boot count %d, want %d", st.State().Boots, i)
		}
	}
	r, err := st.Boot(t0.Add(4 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	assertRolledBack(t, st, r, "not confirmed after 3 boots")
	// Later boots run the active slot and change nothing.
	if r, err := st.Boot(t0.Add(time.Minute)); err != nil || r != (Result{}) {
		t.Errorf("boot after rollback: %+v, %v", r, err)
	}
}

func TestBootAfterDeadline(t *testing.T) {
	st, _ := installPending(t, &Options{ConfirmTimeout: time.Minute})
	r, err := st.Boot(t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	assertRolledBack(t, st, r, "confirm deadline 2026-11-22T12:01:00Z passed")
}

func TestConfirmErrors(t *testing.T) {
	st := mustOpen(t, NewMemory(), nil)
	if err := st.Confirm(t0); !errors.Is(err, ErrNoPending) {
		t.Errorf("Confirm without update: %v", err)
	}
	img := testImage(100, 15)
	d, _ := st.Begin(plainTransfer(img, 100))
	writeAll(t, d, img, 100, nil)
	st.Finish(d, decode, nil)
	st.Switch()
	if err := st.Switch(); !errors.Is(err, ErrPending) {
		t.Errorf("second Switch: %v", err)
	}
	if _, err := st.Begin(plainTransfer(testImage(100, 16), 100)); !errors.Is(err, ErrPending) || err.Error() != "slot: an update is pending confirmation: slot B" {
		t.Errorf("Begin while pending: %v", err)
	}
	err := st.Confirm(t0)
	if !errors.Is(err, ErrNotBooted) || err.Error() != "slot: pending image has not booted: slot B was switched to but not started (call Boot)" {
		t.Errorf("Confirm before Boot: %v", err)
	}

	late, _ := installPending(t, &Options{ConfirmTimeout: time.Minute})
	err = late.Confirm(t0.Add(time.Minute))
	if !errors.Is(err, ErrDeadline) || err.Error() != "slot: confirm deadline passed: 2026-11-22T12:01:00Z; rolled back to slot A" {
		t.Errorf("late Confirm: %v", err)
	}
	if s := late.State(); s.Active != A || s.Pending != "" || s.B.Status != Bad {
		t.Errorf("after late Confirm: %+v", s)
	}
}

func TestExplicitRollback(t *testing.T) {
	st, _ := installPending(t, nil)
	r, err := st.Rollback(t0.Add(time.Second), "self test failed: no mesh connection")
	if err != nil {
		t.Fatal(err)
	}
	assertRolledBack(t, st, r, "self test failed: no mesh connection")
	if _, err := st.Rollback(t0, "again"); !errors.Is(err, ErrNoPending) {
		t.Errorf("Rollback without pending: %v", err)
	}
}

func TestBeginWhenImageReady(t *testing.T) {
	mem := NewMemory()
	st := mustOpen(t, mem, nil)
	img := testImage(100, 17)
	tr := plainTransfer(img, 100)
	d, _ := st.Begin(tr)
	writeAll(t, d, img, 100, nil)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Begin(tr); !errors.Is(err, ErrReady) || err.Error() != "slot: image already verified in the inactive slot: slot B holds "+tr.Image {
		t.Errorf("Begin of the verified image: %v", err)
	}
	// A different image may still be downloaded; it replaces B at Finish.
	other := testImage(100, 18)
	d, err := st.Begin(plainTransfer(other, 100))
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, d, other, 100, nil)
	if err := st.Finish(d, decode, nil); err != nil {
		t.Fatal(err)
	}
	if got := st.State().B.Image.MD5; got != md5hex(other) {
		t.Errorf("slot B holds %s", got)
	}
}

func TestOpenCorruptState(t *testing.T) {
	for _, tt := range []struct {
		name, content, msg string
	}{
		{"garbage", "not json", "slot: state file corrupt: state.json: invalid character 'o' in literal null (expecting 'u')"},
		{"format", `{"format":2,"active":"A","a":{"status":"good"},"b":{"status":"empty"}}`, "slot: state file corrupt: state.json: format 2, want 1"},
		{"active", `{"format":1,"active":"C","a":{"status":"good"},"b":{"status":"empty"}}`, `slot: state file corrupt: state.json: active slot "C" is not A or B`},
		{"pending is active", `{"format":1,"active":"A","pending":"A","a":{"status":"good"},"b":{"status":"ready"}}`, `slot: state file corrupt: state.json: pending/previous slot "A" is not the inactive slot`},
		{"active not good", `{"format":1,"active":"A","a":{"status":"writing"},"b":{"status":"empty"}}`, "slot: state file corrupt: state.json: active slot A is writing, not good"},
		{"pending not ready", `{"format":1,"active":"A","pending":"B","a":{"status":"good"},"b":{"status":"bad"}}`, "slot: state file corrupt: state.json: pending slot B is bad, not ready"},
		{"status", `{"format":1,"active":"A","a":{"status":"good"},"b":{"status":"shiny"}}`, `slot: state file corrupt: state.json: slot B has unknown status "shiny"`},
		{"boots", `{"format":1,"active":"A","boots":-1,"a":{"status":"good"},"b":{"status":"empty"}}`, "slot: state file corrupt: state.json: negative boot count -1"},
		{"huge", strings.Repeat(" ", maxStateSize+1), "slot: state file corrupt: state.json is 65537 bytes, more than the 65536 expected"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemory()
			if err := writeAtomic(mem, stateFile, []byte(tt.content)); err != nil {
				t.Fatal(err)
			}
			_, err := Open(mem, nil)
			if !errors.Is(err, ErrCorrupt) || err.Error() != tt.msg {
				t.Errorf("got %v\nwant %s", err, tt.msg)
			}
		})
	}
	if _, err := Open(NewMemory(), &Options{Factory: Info{MD5: "XYZ"}}); err == nil {
		t.Error("invalid factory md5 accepted")
	}
}

func TestDirRejectsEscapingNames(t *testing.T) {
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", "../x", "/etc/passwd", `a\b`, "a\x00b"} {
		if _, err := d.Create(name); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
		if err := d.Rename("state.json", name); err == nil {
			t.Errorf("Rename to %q succeeded", name)
		}
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := NewDir(file); err == nil {
		t.Error("NewDir on a file succeeded")
	}
}
