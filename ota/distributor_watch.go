package ota

import (
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// OnEvent implements mesh.EventObserver: a change of the mesh's layout
// checks the stock receivers at once, so a reboot (away for a second or
// two) is seen as it happens, not only by the once-a-second poll, which a
// busy machine can stretch past a short absence.
func (d *Distributor) OnEvent(now time.Time, ev mesh.Event) {
	switch ev := ev.(type) {
	case mesh.DelayMeasured:
		d.linkDelay(now, ev)
		return
	case mesh.ChangedConnections, mesh.DroppedConnection, mesh.NewConnection:
	default:
		return
	}
	for _, c := range d.campaigns {
		if c.State == CampaignRunning && !c.stockNext.IsZero() {
			d.stockCheck(now, c)
			// As Tick would: the next one may be a minute away.
			if c.settle(now) {
				d.finish(now, c, c.State, c.Reason)
			}
		}
	}
}
