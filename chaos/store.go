package chaos

import (
	"crypto/ed25519"
	"errors"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
)

// errPowerCut is what every storage operation of a device returns from
// the moment its power is cut until it is back.
var errPowerCut = errors.New("chaos: power cut")

// storageHook is the device's slot.WithFaults hook: it counts down to an
// armed power cut and fails everything after it.
func (r *run) storageHook(dv *device) func(slot.Op) error {
	return func(slot.Op) error { return r.storageOp(dv) }
}

// storageOp is one storage operation of dv: it fails once the power is
// cut, and cuts it if an armed cut is due.
func (r *run) storageOp(dv *device) error {
	if dv.cut {
		return errPowerCut
	}
	if dv.cutAfter < 0 {
		return nil
	}
	if dv.cutAfter > 0 {
		dv.cutAfter--
		return nil
	}
	dv.cutAfter = -1
	dv.cut = true
	// The operation never happens; the node goes down right after the
	// step that asked for it.
	down := dv.cutFor
	r.net.At(r.net.Now(), func() { r.powerOff(dv, down, false) })
	return errPowerCut
}

// chaosStore is a device's ota.Store with a corrupting chunk write: the
// flash write (or the bytes handed to it) going wrong once.
type chaosStore struct {
	ota.Store
	dv *device
}

type chaosDownload struct {
	ota.Download
	dv *device
}

func (s chaosStore) Begin(t ota.Transfer) (ota.Download, error) {
	d, err := s.Store.Begin(t)
	if err != nil {
		return nil, err
	}
	return chaosDownload{d, s.dv}, nil
}

func (s chaosStore) Finish(d ota.Download, pub ed25519.PublicKey) error {
	if cd, ok := d.(chaosDownload); ok {
		d = cd.Download
	}
	return s.Store.Finish(d, pub)
}

// Staged implements ota.StagedStore.
func (s chaosStore) Staged() (ota.Transfer, bool) {
	if st, ok := s.Store.(ota.StagedStore); ok {
		return st.Staged()
	}
	return ota.Transfer{}, false
}

// ReadActive implements ota.ActiveReader.
func (s chaosStore) ReadActive(off int64, n int) ([]byte, error) {
	if ar, ok := s.Store.(ota.ActiveReader); ok {
		return ar.ReadActive(off, n)
	}
	return nil, errors.New("chaos: the store cannot read its running image")
}

func (d chaosDownload) WriteChunk(i int, data []byte) error {
	if d.dv.corruptAfter >= 0 && !d.Has(i) {
		if d.dv.corruptAfter == 0 && len(data) > 0 {
			bad := append([]byte(nil), data...)
			bad[len(bad)/2] ^= 0x5a
			data = bad
			d.dv.corrupted++
		}
		d.dv.corruptAfter--
	}
	return d.Download.WriteChunk(i, data)
}
