package stockota

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// flashTransfer offers img in parts of 4 bytes to a receiver on f and
// delivers every part in order, corrupted by bad (nil: none).
func flashTransfer(t *testing.T, r *Receiver, img []byte, bad func(k uint32, b []byte) []byte) {
	t.Helper()
	parts := uint32((len(img) + 3) / 4)
	a := protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: md5hex(img), Role: "sensor", Hardware: "ESP32", NoPart: parts}
	deliver(t, r, &a)
	for k := range parts {
		chunk := img[k*4 : min(int(k+1)*4, len(img))]
		if bad != nil {
			chunk = bad(k, chunk)
		}
		d := &protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: 7, PartNo: k}}
		d.SetBytes(chunk)
		deliver(t, r, d)
	}
}

// A good image goes into the partition not running and boots after the
// restart ota.hpp schedules; ota_fn holds its md5 from then on.
func TestFlashSwitchesAfterTheMD5Check(t *testing.T) {
	f := NewFlash("factory")
	var rebooted bool
	r := &Receiver{Role: "sensor", Hardware: "ESP32", Flash: f, Reboot: func(time.Time) { rebooted = true }}
	r.Attach(&recordingHost{id: 7})
	img := []byte("a new image, 27 bytes long.")
	flashTransfer(t, r, img, nil)
	if f.Boot != 1 || f.RunningMD5() != "factory" || f.MD5File != md5hex(img) || !bytes.Equal(f.Parts[1].Data, img) {
		t.Fatalf("after the last part: boot ota_%d, running %q, ota_fn %q", f.Boot, f.RunningMD5(), f.MD5File)
	}
	if r.NextDeadline() != epoch.Add(2*time.Second) {
		t.Fatalf("restart due at %v", r.NextDeadline())
	}
	r.Tick(epoch.Add(2 * time.Second))
	if !rebooted {
		t.Fatal("no restart 2 s after a good image")
	}
	r.Attach(&recordingHost{id: 7})
	if f.RunningMD5() != md5hex(img) || r.Installed != md5hex(img) {
		t.Fatalf("after the restart: running %q, installed %q", f.RunningMD5(), r.Installed)
	}
}

// A chunk written wrong fails Update.end's MD5 check: otadata stays on the
// running image and the receiver forgets the transfer.
func TestFlashKeepsTheRunningImageOnABadMD5(t *testing.T) {
	f := NewFlash("factory")
	r := &Receiver{Role: "sensor", Hardware: "ESP32", Flash: f}
	r.Attach(&recordingHost{id: 7})
	flashTransfer(t, r, []byte("another image of some bytes"), func(k uint32, b []byte) []byte {
		if k == 2 {
			return []byte("XXXX")
		}
		return b
	})
	if f.Boot != 0 || f.Parts[1].MD5 != "" || f.MD5File != "" || r.PartsReceived() != 0 || !r.NextDeadline().IsZero() {
		t.Fatalf("boot ota_%d, ota_1 md5 %q, ota_fn %q, part %d", f.Boot, f.Parts[1].MD5, f.MD5File, r.PartsReceived())
	}
}

// A power cut at any flash operation leaves a bootable image: the old one
// up to the switch, the new one after it (its ota_fn may be missing: the
// C++ then fetches it again).
func TestFlashPowerCutAtEveryOperation(t *testing.T) {
	img := []byte("the image a power cut interrupts")
	for cutAt := 0; ; cutAt++ {
		f := NewFlash("factory")
		ops := 0
		f.Hook = func(*FlashOp) error {
			if ops++; ops > cutAt {
				return errors.New("power cut")
			}
			return nil
		}
		r := &Receiver{Role: "sensor", Hardware: "ESP32", Flash: f}
		r.Attach(&recordingHost{id: 7})
		flashTransfer(t, r, img, nil)
		f.Hook = nil
		r.Attach(&recordingHost{id: 7}) // power on
		switch got := f.RunningMD5(); {
		case ops <= cutAt:
			if got != md5hex(img) || r.Installed != md5hex(img) {
				t.Fatalf("uncut: runs %q, installed %q", got, r.Installed)
			}
			return
		case got != "factory" && got != md5hex(img):
			t.Fatalf("cut at operation %d: boots %q", cutAt, got)
		}
	}
}
