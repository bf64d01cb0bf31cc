package linuxnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/meshfleet/meshfleet/slot"
)

// installFile, in the slot directory, records the switched image whose
// installation completed: its --on-switch command succeeded, or there is
// none. A pending image without it was never installed (the command
// failed, or the node stopped while it ran), so its first start must not
// confirm it: the old program would report in for the new image.
const installFile = "installed.json"

type installRecord struct {
	MD5  string    `json:"md5"`
	Slot slot.Slot `json:"slot"`
	At   time.Time `json:"at"`
}

// markInstalled records that the switch to info in sl completed.
func (d *Device) markInstalled(sl slot.Slot, info slot.Info, now time.Time) error {
	data, err := json.Marshal(installRecord{MD5: info.MD5, Slot: sl, At: now.UTC()})
	if err != nil {
		return err
	}
	path := filepath.Join(d.cfg.SlotDir, installFile)
	tmp, err := os.CreateTemp(d.cfg.SlotDir, ".tmp-"+installFile)
	if err != nil {
		return fmt.Errorf("linuxnode: record installation: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	if err := tmp.Sync(); werr == nil {
		werr = err
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("linuxnode: record installation in %s: %w", path, werr)
	}
	if dir, err := os.Open(d.cfg.SlotDir); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// forgetInstalled removes the record before a new switch's command runs.
func (d *Device) forgetInstalled() error {
	err := os.Remove(filepath.Join(d.cfg.SlotDir, installFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("linuxnode: %w", err)
	}
	return nil
}

// installed reports whether the switch to md5 in sl completed.
func (d *Device) installed(sl slot.Slot, md5 string) bool {
	f, err := os.Open(filepath.Join(d.cfg.SlotDir, installFile))
	if err != nil {
		return false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return false
	}
	var r installRecord
	if json.Unmarshal(data, &r) != nil {
		return false
	}
	return r.MD5 == md5 && r.Slot == sl
}
