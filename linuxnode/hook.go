package linuxnode

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/slot"
)

// hookJob is a slot change waiting for its command.
type hookJob struct {
	action string // ActionSwitch | ActionRollback
	slot   slot.Slot
	info   slot.Info
	path   string
}

// slotChanged is called in the driver's loop after a switch or rollback:
// the command, if any, runs in Run; without one the restart is due now.
func (d *Device) slotChanged(j hookJob) {
	if len(d.command(j.action)) == 0 {
		d.requestRestart()
		return
	}
	d.mu.Lock()
	d.jobs = append(d.jobs, j)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Device) command(action string) []string {
	if action == ActionSwitch {
		return d.cfg.OnSwitch
	}
	return d.cfg.OnRollback
}

func (d *Device) nextJob() (hookJob, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.jobs) == 0 {
		return hookJob{}, false
	}
	j := d.jobs[0]
	d.jobs = d.jobs[1:]
	return j, true
}

// Run carries out the --on-switch and --on-rollback commands, one at a
// time, until ctx ends; each one's outcome is a HookEvent emitted through
// drv. A failed --on-switch command abandons the switch (the image rolls
// back, reported as such), since the new image was not installed.
func (d *Device) Run(ctx context.Context, drv Driver) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
		for {
			j, ok := d.nextJob()
			if !ok || ctx.Err() != nil {
				break
			}
			d.runHook(ctx, drv, j)
		}
	}
}

// hookOutputLimit is how much of a command's output its HookEvent keeps.
const hookOutputLimit = 4 << 10

func (d *Device) runHook(ctx context.Context, drv Driver, j hookJob) {
	argv := slices.Clone(d.command(j.action))
	if j.path != "" {
		argv = append(argv, j.path)
	}
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"MESHFLEET_OTA_ACTION="+j.action,
		"MESHFLEET_SLOT="+string(j.slot),
		"MESHFLEET_SLOT_PATH="+j.path,
		"MESHFLEET_SLOT_DIR="+d.cfg.SlotDir,
		"MESHFLEET_IMAGE_MD5="+j.info.MD5,
		"MESHFLEET_IMAGE_VERSION="+j.info.Version,
	)
	out := &tail{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// A command that leaves a child holding its output must not hold up
	// the node's next update.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	if err == nil && j.action == ActionSwitch {
		err = d.markInstalled(j.slot, j.info, time.Now())
	}
	if err != nil && ctx.Err() != nil {
		// The node is stopping, perhaps at the command's own request: an
		// image whose installation did not complete rolls back at the
		// next start.
		d.log.Warn("ota hook stopped with the node", "action", j.action, "command", argv, "err", err)
		return
	}
	ev := HookEvent{Action: j.action, Command: argv, SlotPath: j.path, MD5: j.info.MD5, ExitCode: -1,
		Seconds: time.Since(start).Seconds(), Output: out.String()}
	if cmd.ProcessState != nil {
		ev.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		ev.Error = err.Error()
		if errors.Is(hctx.Err(), context.DeadlineExceeded) {
			ev.Error = "timed out after " + d.cfg.HookTimeout.String() + ": " + ev.Error
		}
	}
	d.log.Info("ota hook finished", "action", j.action, "command", argv, "exit_code", ev.ExitCode, "err", ev.Error)
	derr := drv.Do(ctx, func(now time.Time, n *mesh.Node) {
		n.Emit(ev)
		if err != nil && j.action == ActionSwitch && d.ota != nil {
			d.ota.undoSwitch(now, "on-switch command failed: "+ev.Error)
		}
	})
	if derr != nil {
		d.log.Warn("ota hook outcome not reported: the node stopped", "action", j.action, "err", derr)
		return
	}
	if err == nil || j.action == ActionRollback {
		d.requestRestart()
	}
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = slices.Delete(t.buf, 0, over)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
