package scenario

import (
	"time"

	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/status"
)

// ImageBehaviour is what an image does on a simulated device once it runs:
// the model that lets a benchmark roll out a bad image.
type ImageBehaviour struct {
	// CrashOnBoot: the image crashes before it can confirm; its self test
	// fails and the A/B slots fall back to the previous image.
	CrashOnBoot bool
	// CrashEvery: once confirmed, the device crashes and reboots after
	// this much uptime, again and again (0: never): an image that passes
	// its own self test and fails the rollout's health gate.
	CrashEvery time.Duration
	// LeakPerMinute is free heap lost per minute of uptime after
	// LeakAfter: a leak only telemetry shows.
	LeakPerMinute uint32
	LeakAfter     time.Duration
}

// Firmware models the images a simulated fleet runs and the devices'
// boots: give its SelfTest and Restart to OTA (Spec.OTA.SelfTest,
// Spec.OTA.Restart) and call Poll as virtual time passes.
type Firmware struct {
	// Images is what each image does, by md5; an image not listed is
	// healthy.
	Images map[string]ImageBehaviour
	// BootTime is how long a reboot keeps a device off the mesh (3 s,
	// an ESP's restart and WiFi join before the mesh dials).
	BootTime time.Duration
	// OnReboot, if set, sees every reboot as it starts, and OnBoot the
	// device back up with the image it now runs.
	OnReboot func(d *Device, now time.Time)
	OnBoot   func(d *Device, now time.Time)

	net       *sim.Network
	boots     map[uint32]time.Time
	rebooting map[uint32]bool
}

// NewFirmware returns the model for the devices of net, every one booted
// at net's current time.
func NewFirmware(net *sim.Network, images map[string]ImageBehaviour) *Firmware {
	return &Firmware{Images: images, BootTime: 3 * time.Second, net: net, boots: map[uint32]time.Time{}, rebooting: map[uint32]bool{}}
}

// SelfTest is our receivers' self test: an image that crashes on boot
// fails it.
func (f *Firmware) SelfTest(_ *Device, md5 string) bool { return !f.Images[md5].CrashOnBoot }

// Restart reboots the device into the slot its store boots next: off the
// mesh for BootTime, then a fresh start. It runs after the current step
// (a receiver asks for it from inside its own step).
func (f *Firmware) Restart(d *Device, now time.Time) {
	if f.rebooting[d.ID] {
		return
	}
	f.rebooting[d.ID] = true
	// now is on the device's clock, which may run ahead of the network's.
	f.net.At(f.net.Now(), func() {
		if f.OnReboot != nil {
			f.OnReboot(d, f.net.Now())
		}
		f.net.Crash(d.Node)
		f.net.After(f.BootTime, func() {
			delete(f.rebooting, d.ID)
			f.boots[d.ID] = f.net.Now()
			f.net.Restart(d.Node)
			if f.OnBoot != nil {
				f.OnBoot(d, f.net.Now())
			}
		})
	})
}

// PowerOn starts a device that was off (a late joiner): it boots now.
func (f *Firmware) PowerOn(d *Device) {
	f.boots[d.ID] = f.net.Now()
	f.net.Restart(d.Node)
}

// Rebooting reports whether the device is in a reboot.
func (f *Firmware) Rebooting(d *Device) bool { return f.rebooting[d.ID] }

// Uptime is the time since the device last booted (since the model was
// made for a device that never rebooted).
func (f *Firmware) Uptime(d *Device, now time.Time, start time.Time) time.Duration {
	b, ok := f.boots[d.ID]
	if !ok {
		b = start
	}
	return now.Sub(b)
}

// running is the image a device runs and whether it confirmed it.
func running(d *Device) (string, bool) {
	if d.Store == nil {
		return "", false
	}
	return d.Store.Active()
}

// FreeMemory is the device's free heap: the same model as DeviceProviders,
// less what the running image leaks.
func (f *Firmware) FreeMemory(d *Device, now, start time.Time) uint32 {
	up := f.Uptime(d, now, start)
	boot := now.Add(-up)
	mem := status.MemoryModel{Boot: boot, Start: 120_000 + (d.ID%7)*4_000, Floor: 20_000, Ripple: 2_000, RipplePeriod: 3 * time.Minute}
	free := mem.Free(now)
	md5, _ := running(d)
	if b := f.Images[md5]; b.LeakPerMinute > 0 && up > b.LeakAfter {
		leak := uint32((up - b.LeakAfter).Minutes() * float64(b.LeakPerMinute))
		free = max(free-min(leak, free), mem.Floor)
	}
	return free
}

// Poll crashes the devices whose confirmed image crashes after CrashEvery
// of uptime.
func (f *Firmware) Poll(devices []*Device, now, start time.Time) {
	for _, d := range devices {
		md5, confirmed := running(d)
		b := f.Images[md5]
		if b.CrashEvery > 0 && confirmed && d.Node.Up() && !f.rebooting[d.ID] && f.Uptime(d, now, start) >= b.CrashEvery {
			f.Restart(d, now)
		}
	}
}
