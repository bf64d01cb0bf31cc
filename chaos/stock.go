package chaos

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
)

// A stock receiver reports nothing, so what the campaign can ask of it is
// less than of ours:
//   - bricked and bad-image are checked on its flash at every boot and at
//     the end: the partition the bootloader boots must hold an image that
//     passed Update's MD5 check and that a campaign published (or the
//     factory image);
//   - the distributor must not count it installed unless it runs the
//     target (disagree);
//   - after the heal it must run the target or its previous image. On the
//     previous image it gives no reason: the distributor's record must
//     then not say installed, and the run counts the node as a stock
//     receiver stuck, with the C++ receiver's state, rather than a
//     violation (the C++ receiver's own behaviour, docs/protocol.md Q-19);
//   - on the target, the distributor's record must say installed, have
//     nothing of the node, or say lost with its reason: a stock receiver
//     sends nothing once it runs an image, and in stock-turbo nothing at
//     all, so a distributor that was down when the node rebooted into it,
//     or that saw it leave the mesh and never heard from it again, cannot
//     know (counted as unseen). Any other record (downloading, or lost
//     without a reason) is a disagreement.

// stockFlash gives a device its flash for life, with the campaign's
// storage faults on its operations.
func (r *run) stockFlash(d *scenario.Device) *stockota.Flash {
	dv := r.devs[d.Index]
	dv.flash = stockota.NewFlash(r.im.factory)
	dv.flash.Hook = func(op *stockota.FlashOp) error { return r.flashOp(dv, op) }
	return dv.flash
}

// flashOp is one flash operation of a stock device: armed faults take
// their step from it (the MD5 check and switch are Update.end, the md5
// file comes after the switch), then the power cuts count it.
func (r *run) flashOp(dv *device, op *stockota.FlashOp) error {
	switch op.Kind {
	case stockota.OpEnd:
		r.armNext(dv, &dv.armVerify)
	case stockota.OpWriteFile:
		r.armNext(dv, &dv.armSwitch)
	}
	if err := r.storageOp(dv); err != nil {
		return err
	}
	if op.Kind == stockota.OpWrite && len(r.pending) > 0 {
		r.net.At(r.net.Now(), r.relayCrashes) // a transfer runs
	}
	if op.Kind == stockota.OpWrite && dv.corruptAfter >= 0 {
		if dv.corruptAfter == 0 && len(op.Data) > 0 {
			bad := append([]byte(nil), op.Data...)
			bad[len(bad)/2] ^= 0x5a
			op.Data = bad
			dv.corrupted++
		}
		dv.corruptAfter--
	}
	return nil
}

// stockBoot runs at every start of a stock device, before its receiver
// mounts the flash: it checks what boots, and a crash armed for a new
// image's first boot cuts the power at once (the stock firmware has no
// boot record or self test to cut it at).
func (r *run) stockBoot(d *scenario.Device, now time.Time) []mesh.Plugin {
	dv := r.devs[d.Index]
	dv.cut = false
	dv.bootAt = now
	r.checkStockBoot(dv)
	if bp := dv.flash.BootPartition(); bp >= 0 {
		md5 := dv.flash.Parts[bp].MD5
		if md5 != dv.booted && dv.booted != "" && len(dv.armBoot) > 0 {
			f := dv.armBoot[0]
			dv.armBoot = dv.armBoot[1:]
			r.net.At(now, func() {
				if !dv.down {
					r.res.Injected[CrashBoot]++
					r.powerOff(dv, f.For, false)
				}
			})
		}
		dv.booted = md5
	}
	return nil
}

// checkStockBoot checks the partition a stock device boots.
func (r *run) checkStockBoot(dv *device) {
	f := dv.flash
	p := f.BootPartition()
	if p < 0 {
		r.brick(dv, "no partition holds a checked image (otadata: ota_%d)", f.Boot)
		return
	}
	part := f.Parts[p]
	switch {
	case part.Data == nil:
		if part.MD5 != r.im.factory {
			r.violate("bad-image", dv.d.ID, "ota_%d claims the factory image with md5 %s", p, part.MD5)
		}
	case md5hex(part.Data) != part.MD5:
		r.violate("bad-image", dv.d.ID, "ota_%d boots %d bytes md5 %s, checked as %s", p, len(part.Data), md5hex(part.Data), part.MD5)
	case part.MD5 != r.im.target.MD5 && part.MD5 != r.im.newer.MD5:
		r.violate("bad-image", dv.d.ID, "ota_%d boots an image no campaign published (md5 %s)", p, part.MD5)
	}
}

// stockSeen outlasts the distributor's check of a stock node's return
// after its reboot: polled once a second, then probed until 10 s after
// an announce (held announces can make that up to a minute).
const stockSeen = 90 * time.Second

// stockThrough reports whether a stock device is through: on the target
// with the distributor knowing it, or nothing more will happen for it
// (the campaign ended: no announce, no chunk).
func (r *run) stockThrough(dv *device, c *ota.Campaign, p ota.NodeProgress) bool {
	if dv.d.Runs(r.target.MD5) && p.State == ota.StateInstalled {
		return true
	}
	if _, known := c.Node(dv.d.ID); !known && dv.d.Runs(r.target.MD5) && r.net.Now().Sub(dv.bootAt) > stockSeen {
		return true // running it long enough for its reboot to have been seen: it was not (unseen)
	}
	return c.State != ota.CampaignRunning
}

// stockStuck judges a reachable stock device not on the target after the
// heal: on its previous image it is counted as stuck, not a violation
// (its record was checked against installed already); anything else is
// stuck.
func (r *run) stockStuck(dv *device, prev map[string]bool, p ota.NodeProgress, known bool) {
	running := dv.flash.RunningMD5()
	if running == "" {
		return // bricked, counted when it booted
	}
	if !prev[running] {
		r.violate("stuck", dv.d.ID, "runs %s, neither the target nor its previous image; the distributor says %q",
			r.name(running), stateOf(p, known))
		return
	}
	r.res.StockStuck++
	r.res.StockWhy = append(r.res.StockWhy, fmt.Sprintf("node %d on %s: %s; the distributor says %q %q",
		dv.d.ID, r.name(running), dv.d.Stock.Waiting(), stateOf(p, known), p.Err))
}

// stockUnseen counts a stock device on the target that the distributor
// has no record of, or lost track of (lost, with its reason).
func (r *run) stockUnseen(dv *device, p ota.NodeProgress, known bool) {
	r.res.StockUnseen++
	r.res.StockWhy = append(r.res.StockWhy, fmt.Sprintf("node %d runs %s; the distributor says %q %q", dv.d.ID, r.name(r.target.MD5), stateOf(p, known), p.Err))
}
