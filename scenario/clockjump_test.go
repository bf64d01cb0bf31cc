package scenario

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/ota"
)

// The root's clock jumping ahead mid-transfer (a gateway back from a
// stall: its timers all due at once) must not make the distributor give
// up on stock receivers that are still asking. Before the distributor
// discounted the time it did not watch, the ten-minute jump found all
// three lost, ended the campaign failed and left them asking for ever.
func TestStockReceiversRootClockJump(t *testing.T) {
	for _, jump := range []time.Duration{30 * time.Second, 3 * time.Minute, 10 * time.Minute} {
		r := newStockRig(t, 3)
		c := r.start(t)
		net := r.f.Net
		d0 := r.f.Devices[0]
		if !net.RunUntil(func() bool { p, _ := c.Node(d0.ID); return p.Done >= 3 }, 10*time.Minute) {
			t.Fatalf("node %d never got going: %+v", d0.ID, c.Nodes())
		}
		if err := net.JumpClock(r.f.Root, jump); err != nil {
			t.Fatal(err)
		}
		if !net.RunUntil(func() bool { return !c.Active() }, 30*time.Minute) {
			t.Fatalf("jump %s: campaign still %s: %+v", jump, c.State, c.Nodes())
		}
		md5 := md5hex(r.img)
		for _, d := range r.f.Devices {
			p, _ := c.Node(d.ID)
			if !d.Runs(md5) || p.State != ota.StateInstalled {
				t.Errorf("jump %s: node %d runs the image %v, the distributor says %s (%s)", jump, d.ID, d.Runs(md5), p.State, p.Err)
			}
		}
		if c.State != ota.CampaignCompleted {
			t.Errorf("jump %s: campaign %s (%s), want completed", jump, c.State, c.Reason)
		}
	}
}
