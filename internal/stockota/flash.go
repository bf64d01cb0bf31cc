package stockota

import (
	"bytes"
	"errors"
)

// Flash is a stock ESP32's flash as ota.hpp uses it through Arduino's
// Update: two app partitions (ota_0, ota_1), the otadata record that
// says which one boots, and the LittleFS file (ota_fn) holding the md5 of
// the last update, which is what the receiver believes it runs.
//
// Update.begin picks the partition the running image is not in and
// erases it; Update.write appends; Update.end(true) checks the MD5 given
// to setMD5 and only then switches otadata to the new partition, an
// atomic write on ESP32. ESP8266 works otherwise (eboot copies the new
// image over the old one at the next boot); that copy is not modelled.
//
// The flash outlives the receiver's RAM: a power cut loses the Update in
// progress (Attach starts afresh) but not what was written.
type Flash struct {
	Parts [2]Partition
	Boot  int // otadata: the partition the bootloader tries first
	// Running is the partition the device booted from (-1: none boots).
	Running int
	// MD5File is ota_fn's md5 ("": no file, as on a serial-flashed node).
	MD5File string
	// Hook, if set, runs before every flash operation: an error is a
	// power cut, the operation does not happen and every one after it
	// fails until the next Mount. It may change op.Data (a bad write).
	Hook func(op *FlashOp) error

	writing int    // the partition Update writes (-1: Update is not running)
	want    string // setMD5
	failed  bool   // the power is out
}

// Partition is one app partition.
type Partition struct {
	// MD5 is the image's md5 as Update.end checked it ("": no valid
	// image: erased, being written, or never finished).
	MD5 string
	// Data is what was written (nil for the factory image, which the
	// model does not hold).
	Data []byte
}

// FlashOp is one flash operation.
type FlashOp struct {
	Kind FlashOpKind
	Data []byte // Write: the bytes
}

// FlashOpKind names a flash operation.
type FlashOpKind string

// The flash operations, in the order a transfer makes them.
const (
	OpBegin     FlashOpKind = "begin"      // Update.begin: erase the other partition
	OpWrite     FlashOpKind = "write"      // Update.write: one chunk
	OpEnd       FlashOpKind = "end"        // Update.end(true): MD5 check, then the otadata switch
	OpWriteFile FlashOpKind = "write-file" // ota_fn, after a good end
)

var (
	errPowerOut   = errors.New("stockota: the power is out")
	errNotRunning = errors.New("stockota: Update is not running")
	errMD5        = errors.New("stockota: MD5 check failed")
)

// NewFlash is a device flashed over serial with an image of md5 factory
// in ota_0 and no ota_fn file.
func NewFlash(factory string) *Flash {
	f := &Flash{writing: -1}
	f.Parts[0].MD5 = factory
	return f
}

// Mount is the device's power-on: the bootloader boots the otadata
// partition, or the other one if that holds no valid image (ESP-IDF's
// fallback), or nothing. It returns the md5 ota_fn holds.
func (f *Flash) Mount() string {
	f.writing, f.want, f.failed = -1, "", false
	f.Running = f.BootPartition()
	return f.MD5File
}

// BootPartition is the partition the bootloader boots now (-1: none).
func (f *Flash) BootPartition() int {
	for _, p := range []int{f.Boot, 1 - f.Boot} {
		if f.Parts[p].MD5 != "" {
			return p
		}
	}
	return -1
}

// RunningMD5 is the md5 of the image the device runs ("" if none boots).
func (f *Flash) RunningMD5() string {
	if f.Running < 0 {
		return ""
	}
	return f.Parts[f.Running].MD5
}

func (f *Flash) op(op *FlashOp) error {
	if f.failed {
		return errPowerOut
	}
	if f.Hook != nil {
		if err := f.Hook(op); err != nil {
			f.failed = true
			return err
		}
	}
	return nil
}

// begin is Update.begin plus setMD5: the partition the running image is
// not in is erased and written from its start. ESP-IDF refuses only the
// running partition, so a begin before the reboot into a switched image
// erases the partition otadata now points at.
func (f *Flash) begin(md5 string) error {
	if err := f.op(&FlashOp{Kind: OpBegin}); err != nil {
		return err
	}
	next := 0
	if f.Running == 0 {
		next = 1
	}
	f.Parts[next] = Partition{}
	f.writing, f.want = next, md5
	return nil
}

// abort is Update.end(false) or a failed Update: the partition stays
// without a valid image.
func (f *Flash) abort() { f.writing, f.want = -1, "" }

func (f *Flash) write(data []byte) error {
	if f.writing < 0 {
		return errNotRunning
	}
	op := FlashOp{Kind: OpWrite, Data: data}
	if err := f.op(&op); err != nil {
		return err
	}
	p := &f.Parts[f.writing]
	p.Data = append(p.Data, op.Data...)
	return nil
}

// end is Update.end(true): the written image must have the md5 setMD5
// gave, and only then does otadata switch to it.
func (f *Flash) end() error {
	if f.writing < 0 {
		return errNotRunning
	}
	if err := f.op(&FlashOp{Kind: OpEnd}); err != nil {
		return err
	}
	p := &f.Parts[f.writing]
	defer f.abort()
	if md5hex(p.Data) != f.want {
		return errMD5
	}
	p.MD5 = f.want
	f.Boot = f.writing
	return nil
}

// writeFile writes ota_fn.
func (f *Flash) writeFile(md5 string) error {
	if err := f.op(&FlashOp{Kind: OpWriteFile}); err != nil {
		return err
	}
	f.MD5File = md5
	return nil
}

// Image is the bytes of the image partition p holds (nil for the
// factory image or none).
func (f *Flash) Image(p int) []byte {
	return bytes.Clone(f.Parts[p].Data)
}
