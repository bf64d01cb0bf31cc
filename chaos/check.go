package chaos

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
)

// settleLimit bounds the virtual time a run is given, after the last
// fault's time, to finish the campaign.
const settleLimit = 30 * time.Minute

// checkBootable checks what a device boots (the store as it opened after
// a power-off): the slot that boots, and the one a rollback returns to,
// hold verified images (bricked otherwise) that a campaign published or
// the factory image (bad-image otherwise).
func (r *run) checkBootable(dv *device, st *slot.Store) {
	state := st.State()
	slots := []slot.Slot{state.BootSlot()}
	if state.Pending != "" {
		slots = append(slots, state.Active)
	}
	for _, sl := range slots {
		ss := state.Slot(sl)
		if ss.Status != slot.Good && ss.Status != slot.Ready {
			r.brick(dv, "slot %s (boots next: %s) is %s %s", sl, state.BootSlot(), ss.Status, ss.Reason)
			continue
		}
		if ss.Image.Size == 0 {
			if ss.Image.MD5 != r.im.factory {
				r.violate("bad-image", dv.d.ID, "slot %s claims the factory image with md5 %s", sl, ss.Image.MD5)
			}
			continue // the factory image is not in the store
		}
		b, err := readSlot(st, sl)
		got := md5hex(b)
		switch {
		case err != nil:
			r.brick(dv, "slot %s cannot be read: %v", sl, err)
		case int64(len(b)) != ss.Image.Size || got != ss.Image.MD5:
			r.brick(dv, "slot %s holds %d bytes md5 %s, recorded %d bytes md5 %s", sl, len(b), got, ss.Image.Size, ss.Image.MD5)
		case got != r.im.target.MD5 && got != r.im.newer.MD5:
			r.violate("bad-image", dv.d.ID, "slot %s holds an image no campaign published (md5 %s)", sl, got)
		}
	}
}

func readSlot(st *slot.Store, sl slot.Slot) ([]byte, error) {
	rc, err := st.OpenImage(sl)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (r *run) brick(dv *device, format string, args ...any) {
	if !dv.bricked {
		dv.bricked = true
		r.res.Bricked++
	}
	r.violate("bricked", dv.d.ID, format, args...)
}

// settle runs the healed mesh until every device the root reaches is
// through (on the target with the distributor knowing it, or told off
// with a final reason), or for settleLimit. It is checked once a virtual
// second: the check walks every device, and a busy mesh has thousands of
// instants a second.
func (r *run) settle() bool {
	end := r.net.Now().Add(settleLimit)
	for r.net.Now().Before(end) && !r.through() {
		if !r.runTo(r.net.Now().Add(time.Second)) {
			return false
		}
	}
	r.res.ThroughS = r.net.Now().Sub(r.t0).Seconds()
	return true
}

// spinEvents is more events in one virtual second than a mesh of a few
// hundred nodes has any reason for: some node asks to be woken at once
// again and again without getting anywhere.
const spinEvents = 200_000

// runTo runs the network until t a virtual second at a time, and reports
// false (with a livelock violation) if some node spins.
func (r *run) runTo(t time.Time) bool {
	for r.net.Now().Before(t) {
		before := r.net.Stats().Events
		r.net.Run(minTime(t, r.net.Now().Add(time.Second)))
		if r.net.Stats().Events-before > spinEvents {
			r.livelock()
			return false
		}
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// livelock reports the nodes whose next deadline has passed.
func (r *run) livelock() {
	found := false
	for _, nd := range r.net.Nodes() {
		if m := nd.Machine(); nd.Up() && m != nil {
			if dl := m.NextDeadline(); !dl.IsZero() && !dl.After(nd.Now()) {
				found = true
				state := ""
				if dv := r.byID[nd.ID()]; dv != nil {
					state = fmt.Sprintf(", receiver %s", receiverState(dv))
				}
				r.violate("livelock", nd.ID(), "wakes at once again and again (deadline %s ago%s)", nd.Now().Sub(dl), state)
			}
		}
	}
	if !found {
		r.violate("livelock", 0, "over %d events in one virtual second", spinEvents)
	}
}

func (r *run) through() bool {
	if r.rootDown || !r.root.Up() {
		return false
	}
	c, ok := r.dist.Campaign(r.targetID())
	if !ok {
		return false
	}
	reach := map[uint32]bool{}
	for _, id := range r.root.NodeList(false) {
		reach[id] = true
	}
	for _, dv := range r.devs {
		if dv.down || dv.rebooting || !dv.d.Node.Up() {
			return false
		}
		if !dv.bricked && !reach[dv.d.ID] {
			return false
		}
		p, _ := c.Node(dv.d.ID)
		if dv.d.Runs(r.target.MD5) && (p.State == ota.StateConfirmed || p.State == ota.StateInstalled) {
			continue
		}
		if p.State == ota.StateRefused || p.State == ota.StateRolledBack {
			continue
		}
		if dv.d.Opened == nil && dv.bricked {
			continue // nothing more will happen there
		}
		return false
	}
	return true
}

func (r *run) targetID() string {
	if r.newer {
		return "v3"
	}
	return "v2"
}

// check runs the end-of-run invariants.
func (r *run) check() {
	for _, dv := range r.devs {
		r.res.Injected[Corrupt] += dv.corrupted
	}
	if r.res.Injected[Corrupt] == 0 {
		delete(r.res.Injected, Corrupt)
	}
	c, ok := r.dist.Campaign(r.targetID())
	if !ok {
		r.violate("disagree", 0, "the distributor has no campaign %s", r.targetID())
		return
	}
	var reach []uint32
	if r.root.Up() {
		reach = r.root.NodeList(false)
	}
	prev := map[string]bool{r.im.factory: true}
	if r.newer {
		prev[r.im.target.MD5] = true
	}
	for _, dv := range r.devs {
		id := dv.d.ID
		p, known := c.Node(id)
		onTarget := dv.d.Opened != nil && dv.d.Runs(r.target.MD5)
		if (p.State == ota.StateConfirmed || p.State == ota.StateInstalled) && !onTarget {
			active, confirmed := "", false
			if dv.d.Opened != nil {
				active, confirmed = dv.d.Opened.Active()
			}
			r.violate("disagree", id, "the distributor says %s, the node runs %s (confirmed %v)", p.State, r.name(active), confirmed)
		}
		if !dv.d.Node.Up() || !slices.Contains(reach, id) {
			continue
		}
		r.res.Reachable++
		if onTarget {
			r.res.Completed++
			if p.State != ota.StateConfirmed && p.State != ota.StateInstalled {
				r.violate("disagree", id, "the node runs the target confirmed, the distributor says %q", stateOf(p, known))
			}
			continue
		}
		if dv.d.Opened == nil {
			continue // bricked, counted when it booted
		}
		active, confirmed := dv.d.Opened.Active()
		// Failed is no end: a failed transfer is tried again.
		reasoned := known && p.Err != "" && (p.State == ota.StateRefused || p.State == ota.StateRolledBack)
		if prev[active] && confirmed && reasoned {
			continue // on its previous image, and the distributor knows why
		}
		r.violate("stuck", id, "%s after the heal: runs %s (confirmed %v, receiver %s); the distributor says %q %q",
			time.Duration(settleLimit), r.name(active), confirmed, receiverState(dv), stateOf(p, known), p.Err)
	}
	// What would boot after one more power cut, on every device.
	for _, dv := range r.devs {
		dv.mem.Crash()
		st, err := slot.Open(dv.mem, &slot.Options{Factory: slot.Info{MD5: r.im.factory, Role: role, Hardware: hardware, Version: "1.0.0"}})
		if err != nil {
			r.brick(dv, "at the end the slot store does not open: %v", err)
			continue
		}
		r.checkBootable(dv, st)
	}
}

func receiverState(dv *device) ota.State {
	if dv.d.Receiver == nil {
		return "none"
	}
	return dv.d.Receiver.State()
}

func stateOf(p ota.NodeProgress, known bool) string {
	if !known {
		return "nothing"
	}
	return string(p.State)
}

// name names an image md5 for a message.
func (r *run) name(md5 string) string {
	switch md5 {
	case r.im.factory:
		return "the factory image"
	case r.im.target.MD5:
		return "v2 " + md5[:8]
	case r.im.newer.MD5:
		return "v3 " + md5[:8]
	case "":
		return "nothing"
	}
	return fmt.Sprintf("unknown %.8s", md5)
}
