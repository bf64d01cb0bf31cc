package ota

import (
	"fmt"
	"slices"
	"time"
)

// Campaign control: how a campaign ends, and the operator's pause, resume
// and abort.

// finish ends a campaign: it keeps its record, not its image.
func (d *Distributor) finish(now time.Time, c *dcampaign, s CampaignState, why string) {
	c.State, c.Reason, c.Finished = s, why, now
	c.settleAt = time.Time{}
	c.stock, c.fast = c.stock.released(), c.fast.released()
	c.push.release()
	c.turbo.release()
	d.queue = slices.DeleteFunc(d.queue, func(r reply) bool { return r.c == c })
	d.emit(c, 0, NodeProgress{})
}

// dropOldFinished keeps the records of the last KeepFinished campaigns
// that ended. It changes d.campaigns: never call it inside a loop over it.
func (d *Distributor) dropOldFinished() {
	ended := 0
	for _, c := range d.campaigns {
		if !c.Active() {
			ended++
		}
	}
	drop := ended - d.cfg.KeepFinished
	if drop <= 0 {
		return
	}
	d.campaigns = slices.DeleteFunc(d.campaigns, func(c *dcampaign) bool {
		if drop > 0 && !c.Active() {
			drop--
			return true
		}
		return false
	})
}

// Pause stops announcing and serving a campaign; receivers keep what they
// have and resume with it.
func (d *Distributor) Pause(now time.Time, id string) error {
	c := d.find(id)
	if c == nil {
		return fmt.Errorf("%w %q", ErrNoCampaign, id)
	}
	if c.State != CampaignRunning {
		return fmt.Errorf("ota: campaign %s is %s, not running", id, c.State)
	}
	c.State = CampaignPaused
	d.queue = slices.DeleteFunc(d.queue, func(r reply) bool { return r.c == c })
	d.emit(c, 0, NodeProgress{})
	return nil
}

// Resume continues a paused campaign (announcing at once).
func (d *Distributor) Resume(now time.Time, id string) error {
	c := d.find(id)
	if c == nil {
		return fmt.Errorf("%w %q", ErrNoCampaign, id)
	}
	if c.State != CampaignPaused {
		return fmt.Errorf("ota: campaign %s is %s, not paused", id, c.State)
	}
	c.State = CampaignRunning
	c.nextAnnounce = now
	// Nodes may have stopped reporting while nothing was served.
	c.lost.restart(now, d.cfg.LostAfter)
	if c.push.pushing && c.push.nextAt.Before(now) {
		c.push.nextAt = now
	}
	d.emit(c, 0, NodeProgress{})
	d.Tick(now)
	return nil
}

// Abort ends a campaign for good.
func (d *Distributor) Abort(now time.Time, id string) error {
	c := d.find(id)
	if c == nil {
		return fmt.Errorf("%w %q", ErrNoCampaign, id)
	}
	if !c.Active() {
		return fmt.Errorf("ota: campaign %s is already %s", id, c.State)
	}
	d.finish(now, c, CampaignAborted, "aborted")
	d.dropOldFinished()
	return nil
}
