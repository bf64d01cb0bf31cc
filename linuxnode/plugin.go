package linuxnode

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/slot"
)

// otaPlugin is the receiver as the node sees it: it adds what a Linux
// process needs around ota.Receiver. It confirms a trial image at the
// first node sync, stops answering OTA packages once a switched image
// waits for the restart (the running process is still the old image), and
// turns the receiver's progress into OTAEvents.
type otaPlugin struct {
	d    *Device
	host mesh.Host
	rc   *ota.Receiver
	rcfg ota.ReceiverConfig

	// running is the image this process started as, in runningSlot.
	running     slot.Info
	runningSlot slot.Slot
	trial       bool // running on trial: confirm at the first node sync
	parked      bool // switched: the new image runs only after a restart
	startEvent  OTAEvent
}

func newOTAPlugin(d *Device, now time.Time) (*otaPlugin, error) {
	p := &otaPlugin{d: d}
	p.rcfg = ota.ReceiverConfig{
		Role: d.cfg.Role, Hardware: d.cfg.Hardware, Store: ota.SlotStoreDir(d.store, d.cfg.SlotDir, d.log.With("component", "ota")),
		PublicKey: d.cfg.PublicKey, RequireSigned: d.cfg.refusesUnsigned(), Root: d.cfg.Root, Restart: p.restarted,
		PeerToPeer: d.cfg.PeerToPeer,
		Logger:     d.log.With("component", "ota"),
	}
	before := d.store.State()
	if sl := before.Pending; sl != "" && !d.installed(sl, before.Slot(sl).Image.MD5) {
		if _, err := d.store.Rollback(now, "its installation did not complete (the --on-switch command failed or was stopped)"); err != nil {
			return nil, fmt.Errorf("linuxnode: roll back an image that was not installed: %w", err)
		}
	}
	rc, err := ota.NewReceiver(p.rcfg, now) // boots the store: counts this start
	if err != nil {
		return nil, fmt.Errorf("linuxnode: %w", err)
	}
	p.rc = rc
	after := d.store.State()
	info, confirmed := d.store.Current()
	p.running, p.runningSlot = info, after.BootSlot()
	ev := OTAEvent{MD5: info.MD5, Version: info.Version, Slot: string(p.runningSlot), SlotPath: d.slotPath(p.runningSlot)}
	switch {
	case before.Pending != "" && after.Pending == "" && after.Last.State == slot.RolledBack:
		// Too many starts without a confirmation, or started after the
		// deadline: the store rolled back as it opened.
		last := after.Last
		ev.State, ev.MD5, ev.Version, ev.Reason = string(ota.StateRolledBack), last.Image.MD5, last.Image.Version, last.Reason
		d.slotChanged(hookJob{action: ActionRollback, slot: after.Active, info: after.Slot(after.Active).Image, path: ev.SlotPath})
	case !confirmed:
		p.trial = true
		ev.State = StateTrial
		ev.Deadline, _ = d.store.Deadline()
	default:
		ev.State = StateIdle
	}
	p.startEvent = ev
	return p, nil
}

// Attach implements mesh.Plugin; it reports how this start went.
func (p *otaPlugin) Attach(h mesh.Host) {
	p.host = h
	p.rc.Attach(otaHost{Host: h, p: p})
	p.emit(p.startEvent)
}

// Types implements mesh.Plugin.
func (p *otaPlugin) Types() []int { return p.rc.Types() }

// HandlePackage implements mesh.Plugin.
func (p *otaPlugin) HandlePackage(now time.Time, conn mesh.ConnID, h protocol.Header, raw []byte) {
	if p.parked && h.Type != ota.TypeNeed {
		// The receiver would now report the switched image as installed
		// although this process still runs the old one. Repair requests
		// of children still get their refusal, so they ask elsewhere.
		return
	}
	p.rc.HandlePackage(now, conn, h, raw)
}

// Tick implements mesh.Plugin.
func (p *otaPlugin) Tick(now time.Time) { p.rc.Tick(now) }

// NextDeadline implements mesh.Plugin.
func (p *otaPlugin) NextDeadline() time.Time { return p.rc.NextDeadline() }

// OnEvent implements mesh.EventObserver: the first node sync of a trial
// image is the restarted process reporting in. The receiver sees every
// event too (a peer offers its image to a neighbour that connects).
func (p *otaPlugin) OnEvent(now time.Time, ev mesh.Event) {
	p.rc.OnEvent(now, ev)
	if _, ok := ev.(mesh.NewConnection); !ok || !p.trial {
		return
	}
	if err := p.rc.Confirm(now); err != nil {
		// Past the deadline: the receiver's next Tick rolls back.
		p.d.log.Warn("ota: confirming the new image failed", "err", err)
		return
	}
	p.trial = false
}

// restarted is the receiver's Restart: a verified image was switched to,
// or a trial image rolled back. A Linux node does not boot in place: the
// new image runs at the next start of the process.
func (p *otaPlugin) restarted(now time.Time) {
	st := p.d.store.State()
	if p.rc.State() == ota.StateRolledBack {
		p.trial = false
		p.d.slotChanged(hookJob{action: ActionRollback, slot: st.Active, info: st.Slot(st.Active).Image, path: p.d.slotPath(st.Active)})
		return
	}
	if st.Pending == "" {
		p.d.log.Error("ota: receiver switched but the slot store has nothing pending")
		return
	}
	p.parked = true
	info := st.Slot(st.Pending).Image
	path := p.d.slotPath(st.Pending)
	p.emit(OTAEvent{State: StateSwitched, MD5: info.MD5, Version: info.Version, Slot: string(st.Pending), SlotPath: path})
	if err := p.d.forgetInstalled(); err != nil {
		p.undoSwitch(now, err.Error())
		return
	}
	if len(p.d.cfg.OnSwitch) == 0 {
		// Nothing to install: the switch is complete.
		if err := p.d.markInstalled(st.Pending, info, now); err != nil {
			p.undoSwitch(now, err.Error())
			return
		}
	}
	p.d.slotChanged(hookJob{action: ActionSwitch, slot: st.Pending, info: info, path: path})
}

// undoSwitch abandons a switch whose --on-switch command failed: the old
// image stays, and a new receiver reports the rollback to the distributor.
func (p *otaPlugin) undoSwitch(now time.Time, reason string) {
	if !p.parked {
		return
	}
	if _, err := p.d.store.Rollback(now, reason); err != nil {
		p.d.log.Error("ota: rolling back the switch", "err", err)
		return
	}
	rc, err := ota.NewReceiver(p.rcfg, now)
	if err != nil {
		p.d.log.Error("ota: restarting the receiver", "err", err)
		return
	}
	rc.Attach(otaHost{Host: p.host, p: p})
	p.rc, p.parked = rc, false
	st := p.d.store.State()
	path := p.d.slotPath(st.Active)
	p.emit(OTAEvent{State: string(ota.StateRolledBack), MD5: st.Last.Image.MD5, Version: st.Last.Image.Version,
		Slot: string(st.Active), SlotPath: path, Reason: reason})
	p.d.slotChanged(hookJob{action: ActionRollback, slot: st.Active, info: st.Slot(st.Active).Image, path: path})
}

func (p *otaPlugin) emit(e OTAEvent) {
	if p.host == nil {
		return
	}
	e.Node = p.host.ID()
	p.host.Emit(e)
}

// progressEvent turns the receiver's progress into an OTAEvent.
func (p *otaPlugin) progressEvent(pr ota.Progress) OTAEvent {
	e := OTAEvent{Node: pr.Node, State: string(pr.State), Transfer: pr.Transfer, Mode: string(pr.Mode), MD5: pr.MD5,
		Chunks: pr.Done, Total: pr.Total, Bytes: pr.Bytes, Rate: pr.Rate, ETA: pr.ETA.Seconds(), Reason: pr.Err}
	switch pr.State {
	case ota.StateConfirmed:
		e.MD5, e.Version = p.running.MD5, p.running.Version
		e.Slot, e.SlotPath = string(p.runningSlot), p.d.slotPath(p.runningSlot)
	case ota.StateRolledBack:
		if p.trial {
			e.MD5, e.Version = p.running.MD5, p.running.Version
		}
		active := p.d.store.State().Active
		e.Slot, e.SlotPath = string(active), p.d.slotPath(active)
	}
	return e
}

// otaHost is the node as the receiver sees it: its progress events become
// OTAEvents.
type otaHost struct {
	mesh.Host
	p *otaPlugin
}

// Defer implements mesh.WorkHost: the receiver's store work goes to the
// driver, which runs it off the node's loop.
func (h otaHost) Defer(w mesh.Work) {
	if wh, ok := h.Host.(mesh.WorkHost); ok {
		wh.Defer(w)
		return
	}
	w.Done(time.Now(), w.Do())
}

func (h otaHost) Emit(ev mesh.Event) {
	if pr, ok := ev.(ota.Progress); ok {
		ev = h.p.progressEvent(pr)
	}
	h.Host.Emit(ev)
}
