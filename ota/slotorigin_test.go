package ota

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/slot"
)

func openSlotDir(t *testing.T, dir string, log *slog.Logger) (*slot.Store, Store) {
	t.Helper()
	s, err := slot.OpenDir(dir, &slot.Options{ConfirmTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, SlotStoreDir(s, dir, log)
}

// switchImage downloads, verifies and switches to a small image through
// st and returns its md5.
func switchImage(t *testing.T, st Store) string {
	t.Helper()
	img := bytes.Repeat([]byte("meshfleet image "), 64)
	md5 := md5hexOf(img)
	d, err := st.Begin(Transfer{Image: md5, Method: "none", ChunkSize: 512, Chunks: 2, TransferSize: int64(len(img))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := d.WriteChunk(i, img[i*512:(i+1)*512]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Finish(d, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
	return md5
}

func TestSlotStoreDirOriginSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, st := openSlotDir(t, dir, nil)
	keep, ok := st.(OriginStore)
	if !ok {
		t.Fatalf("%T does not implement OriginStore", st)
	}
	if o, ok := keep.Origin(); ok {
		t.Fatalf("fresh store has origin %+v", o)
	}
	want := Origin{Image: "0123456789abcdef0123456789abcdef", Transfer: "c-7", Distributor: 4242}
	if err := keep.SetOrigin(want); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, st = openSlotDir(t, dir, nil)
	if got, ok := st.(OriginStore).Origin(); !ok || got != want {
		t.Fatalf("after reopen: origin %+v (%v), want %+v", got, ok, want)
	}
	if _, err := os.Stat(filepath.Join(dir, OriginFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// A rollback found at a start is handed to the receiver, which reports it
// to the origin's distributor; later starts neither report it again nor
// lose it while it is unreported.
func TestSlotStoreDirRollbackReportedOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	s, st := openSlotDir(t, dir, nil)
	img := switchImage(t, st)
	if err := st.(OriginStore).SetOrigin(Origin{Image: img, Transfer: "c", Distributor: 77}); err != nil {
		t.Fatal(err)
	}
	if trial, _, err := st.Boot(now); err != nil || !trial {
		t.Fatalf("boot after switch: trial %v, err %v", trial, err)
	}
	s.Close()

	// Start 1, past the deadline: the slot store rolls back as it boots
	// and the receiver holds the rollback for distributor 77.
	now = now.Add(2 * time.Minute)
	s, st = openSlotDir(t, dir, nil)
	r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.pending; p == nil || p.md5 != img || p.dist != 77 || p.rep.ID != "c" || p.rep.State != string(StateRolledBack) {
		t.Fatalf("start 1: pending %+v, want the rollback of %s for distributor 77", r.pending, img)
	}
	s.Close()

	// Start 2 before it was delivered: still pending.
	s, st = openSlotDir(t, dir, nil)
	if r, err = NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st}, now); err != nil {
		t.Fatal(err)
	}
	if p := r.pending; p == nil || p.dist != 77 {
		t.Fatalf("start 2 (not yet delivered): pending %+v, want the rollback for 77", r.pending)
	}
	// Delivered: the receiver marks the origin reported (deliver does
	// exactly this after sendReport succeeds).
	o, _ := st.(OriginStore).Origin()
	o.Reported = true
	if err := st.(OriginStore).SetOrigin(o); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for start := 3; start <= 4; start++ {
		s, st = openSlotDir(t, dir, nil)
		if r, err = NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st}, now); err != nil {
			t.Fatal(err)
		}
		if r.pending != nil {
			t.Fatalf("start %d: rollback reported again: %+v", start, *r.pending.rep)
		}
		s.Close()
	}
	// The last start no longer sees a rollback at all.
	if r.State() == StateRolledBack {
		t.Fatalf("start 4: state %s, the rollback was handed out again", r.State())
	}
}

// A rollback without a known origin is handed out at one start only.
func TestSlotStoreDirRollbackWithoutOriginOnce(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	s, st := openSlotDir(t, dir, nil)
	img := switchImage(t, st)
	if _, _, err := st.Boot(now); err != nil {
		t.Fatal(err)
	}
	if err := st.Rollback(now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for start, want := range []bool{true, false, false} {
		_, st = openSlotDir(t, dir, nil)
		md5, ok := st.LastRollback()
		if ok != want || ok && md5 != img {
			t.Fatalf("start %d: LastRollback %q %v, want %v", start, md5, ok, want)
		}
	}
}

func TestSlotStoreDirCorruptOriginIsAbsent(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":    "{\"format\":1,\"origin\":{\"image\":",
		"format":     `{"format":9,"origin":{"image":"x","transfer":"c","distributor":1}}`,
		"wrong type": `{"format":1,"origin":{"image":"x","distributor":"one"}}`,
		"no image":   `{"format":1,"origin":{"transfer":"c","distributor":1}}`,
		"oversize":   `{"format":1,"origin":{"image":"` + strings.Repeat("a", 8<<10) + `"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, OriginFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			_, st := openSlotDir(t, dir, slog.New(slog.NewTextHandler(&logs, nil)))
			keep := st.(OriginStore)
			if o, ok := keep.Origin(); ok {
				t.Fatalf("corrupt file gave origin %+v", o)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), OriginFile) {
				t.Fatalf("no warning naming the file: %q", logs.String())
			}
			want := Origin{Image: "0123456789abcdef0123456789abcdef", Transfer: "c", Distributor: 1}
			if err := keep.SetOrigin(want); err != nil {
				t.Fatal(err)
			}
			_, st = openSlotDir(t, dir, nil)
			if got, ok := st.(OriginStore).Origin(); !ok || got != want {
				t.Fatalf("after rewrite: %+v %v", got, ok)
			}
		})
	}
}

// SlotStore without a directory keeps no origin: a receiver must not
// count on one.
func TestSlotStoreWithoutDirHasNoOrigin(t *testing.T) {
	s, err := slot.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := SlotStore(s).(OriginStore); ok {
		t.Fatal("SlotStore claims to keep an origin it cannot keep")
	}
}

func FuzzDecodeOrigin(f *testing.F) {
	f.Add([]byte(`{"format":1,"origin":{"image":"0123456789abcdef0123456789abcdef","transfer":"c","distributor":7,"reported":true},"rollback_reported":"2026-11-23T10:00:00Z"}`))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"rollback_reported":"yesterday"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeOrigin(data)
		if err != nil {
			return
		}
		if rec.Format != originFormat || rec.Origin != nil && rec.Origin.Image == "" {
			t.Fatalf("accepted invalid record %+v", rec)
		}
	})
}
