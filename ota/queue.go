package ota

import (
	"fmt"
	"slices"
	"time"
)

// A campaign with a node list and MaxConcurrent updates its listed nodes
// a few at a time: the others wait in Targets.Queue, outside the list
// (the offers do not name them and their requests go unanswered), until a
// place is free. A place is free when its node is through (confirmed,
// rolled back, refused, installed, lost), failed, or silent for
// QueueStall: one node that fails or went away does not hold up the rest.
// Such a node stays listed, so it may still finish, but the campaign, as
// every campaign with a node list, ends only when all its nodes are
// through.

// defaultQueueStall is DistributorConfig.QueueStall's default.
const defaultQueueStall = 10 * time.Minute

// queueTargets splits spec's node list for a campaign with MaxConcurrent:
// the nodes an earlier run of it had news of are listed again at once,
// the others queue in the order given.
func queueTargets(spec CampaignSpec) (listed, queue []uint32, err error) {
	if spec.MaxConcurrent < 0 {
		return nil, nil, fmt.Errorf("ota: max_concurrent %d: want 1 or more (0: all at once)", spec.MaxConcurrent)
	}
	if len(spec.Nodes) == 0 {
		return nil, nil, fmt.Errorf("ota: max_concurrent %d needs a node list to queue", spec.MaxConcurrent)
	}
	seen := map[uint32]bool{}
	known := map[uint32]bool{}
	for _, p := range spec.Progress {
		known[p.Node] = true
	}
	for _, id := range spec.Nodes {
		if seen[id] {
			continue
		}
		seen[id] = true
		if known[id] {
			listed = append(listed, id)
		} else {
			queue = append(queue, id)
		}
	}
	return listed, queue, nil
}

// inFlight reports whether listed node id holds one of the campaign's
// places at now, and until when it does unless it sends news.
func (c *dcampaign) inFlight(id uint32, now time.Time, stall time.Duration) (bool, time.Time) {
	last := c.admittedAt[id]
	if p, ok := c.nodes[id]; ok {
		if p.Terminal() || p.State == StateFailed {
			return false, time.Time{}
		}
		if p.Updated.After(last) {
			last = p.Updated
		}
	}
	until := last.Add(stall)
	return now.Before(until), until
}

// admit moves queued nodes of c into its node list while fewer than
// MaxConcurrent listed nodes are in flight. A queued node the status
// collector says runs the image already is listed as confirmed without a
// transfer.
func (d *Distributor) admit(now time.Time, c *dcampaign) {
	c.admitCheck = time.Time{}
	if c.State != CampaignRunning || c.Targets.MaxConcurrent <= 0 {
		return
	}
	inflight := 0
	note := func(until time.Time) {
		if c.admitCheck.IsZero() || until.Before(c.admitCheck) {
			c.admitCheck = until
		}
	}
	for _, id := range c.Targets.Nodes {
		if busy, until := c.inFlight(id, now, d.cfg.QueueStall); busy {
			inflight++
			note(until)
		}
	}
	if len(c.Targets.Queue) == 0 {
		c.admitCheck = time.Time{} // nothing waits for a place
		return
	}
	changed := false
	for inflight < c.Targets.MaxConcurrent && len(c.Targets.Queue) > 0 {
		id := c.Targets.Queue[0]
		c.Targets.Queue = c.Targets.Queue[1:] // never written in place: snapshots share it
		c.Targets.Nodes = append(c.Targets.Nodes, id)
		changed = true
		if d.cfg.Running != nil {
			if md5, ok := d.cfg.Running(id); ok && md5 == c.Image.MD5 {
				p := &NodeProgress{Node: id, State: StateConfirmed, Done: c.fast.chunks, Total: c.fast.chunks, Active: md5,
					Bytes: c.fast.size, BytesTotal: c.fast.size, Updated: now, Joined: now, rateFrom: now, rateBase: c.fast.size}
				c.put(p)
				d.emit(c, id, *p)
				continue
			}
		}
		c.admittedAt[id] = now
		inflight++
		note(now.Add(d.cfg.QueueStall))
	}
	if len(c.Targets.Queue) == 0 {
		c.admitCheck = time.Time{}
	}
	if !changed {
		return
	}
	d.listOffers(c)
	c.lost.watch(now, d.cfg.LostAfter)
	// The newly listed nodes hear the offer now, with the early repeats.
	c.announced, c.nextAnnounce = 0, now
	d.emit(c, 0, NodeProgress{})
}

// listOffers makes the offers of c's node list: the nodes not through yet
// (the others need no offer), or every listed node.
func (d *Distributor) listOffers(c *dcampaign) {
	listed := make([]uint32, 0, len(c.Targets.Nodes))
	for _, id := range c.Targets.Nodes {
		if p, ok := c.nodes[id]; ok && p.Terminal() && c.Targets.MaxConcurrent > 0 {
			continue
		}
		listed = append(listed, id)
	}
	if len(listed) == 0 {
		// Every listed node is through; an empty list would offer the
		// image to the whole role.
		listed = slices.Clone(c.Targets.Nodes)
	}
	slices.Sort(listed)
	c.offers = splitOffer(c.offer, slices.Compact(listed), d.cfg.MaxPackageSize)
}
