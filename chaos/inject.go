package chaos

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// bootTime is how long a reboot keeps a device off the mesh.
const bootTime = 3 * time.Second

// fire injects fault n. A fault that cannot act now (its node is down,
// the root is down for a newer image) is skipped and not counted.
func (r *run) fire(n int, f *Fault) {
	switch f.Kind {
	case Newer:
		if r.newer || r.rootDown {
			return
		}
		r.newer = true
		r.target = &r.im.newer
		r.res.Injected[f.Kind]++
		r.startCampaign(ota.CampaignSpec{ID: "v3", Image: r.im.newer, Mode: r.plan.Mode, Method: r.plan.Method})
		return
	case Gateway:
		if r.rootDown {
			return
		}
		r.res.Injected[f.Kind]++
		r.restartGateway(f.For)
		return
	case RelayCrash:
		r.pending = append(r.pending, f)
		r.relayCrashes()
		return
	case ClockJump:
		if f.Arg == jumpRootClock {
			if !r.rootDown && r.net.JumpClock(r.root, f.For) == nil {
				r.res.Injected[f.Kind]++
			}
			return
		}
	}
	dv := r.devs[f.Node]
	node := dv.d.Node
	if dv.down || !node.Up() {
		return
	}
	switch f.Kind {
	case Crash:
		r.res.Injected[f.Kind]++
		r.powerOff(dv, f.For, f.Arg == 1)
	case CrashVerify:
		dv.armVerify = append(dv.armVerify, *f)
	case CrashSwitch:
		dv.armSwitch = append(dv.armSwitch, *f)
	case CrashBoot:
		dv.armBoot = append(dv.armBoot, *f)
	case PowerCut:
		r.armCut(dv, *f)
	case LinkDrop:
		r.res.Injected[f.Kind]++
		for _, nb := range node.Neighbours() {
			r.net.Cut(node, nb)
		}
	case Flap, Loss:
		nbs := node.Neighbours()
		if len(nbs) == 0 {
			return
		}
		r.res.Injected[f.Kind]++
		counts := r.flapCount
		if f.Kind == Loss {
			counts = r.lossCount
		}
		for _, nb := range nbs {
			k := pair(node, nb)
			counts[k]++
			r.applyLink(k, f)
		}
		r.net.After(f.For, func() {
			for _, nb := range nbs {
				k := pair(node, nb)
				counts[k]--
				r.applyLink(k, nil)
			}
		})
	case Partition:
		group := r.subtree(node.ID())
		if len(group) == 0 {
			return
		}
		r.res.Injected[f.Kind]++
		r.partitions[n] = group
		r.applyPartitions()
		r.net.After(f.For, func() {
			delete(r.partitions, n)
			r.applyPartitions()
		})
	case Reconnect:
		if r.net.Redial(node, f.For, time.Duration(f.Arg)*time.Millisecond) > 0 {
			r.res.Injected[f.Kind]++
		}
	case Corrupt:
		dv.corruptAfter = f.Arg
	case ClockJump:
		var err error
		switch f.Arg {
		case jumpDeviceClock:
			err = r.net.JumpClock(node, f.For)
		case jumpMeshForward, jumpMeshBack:
			d := f.For
			if f.Arg == jumpMeshBack {
				d = -d
			}
			err = node.Do(func(now time.Time, m *mesh.Node) { m.ShiftTime(now, d) })
		}
		if err == nil {
			r.res.Injected[f.Kind]++
		}
	case QueueOverflow:
		r.res.Injected[f.Kind]++
		r.queueCount[node]++
		radio := r.baseRadio
		radio.QueueBytes = max(f.Arg, 64)
		r.net.SetRadio(node, radio)
		r.net.After(f.For, func() {
			if r.queueCount[node]--; r.queueCount[node] == 0 {
				r.net.SetRadio(node, r.baseRadio)
			}
		})
	}
}

// armNext arms the first of the faults waiting for the device's step, unless
// a cut is armed already.
func (r *run) armNext(dv *device, waiting *[]Fault) {
	if len(*waiting) > 0 && dv.cutAfter < 0 {
		r.armCut(dv, (*waiting)[0])
		*waiting = (*waiting)[1:]
	}
}

// armCut arms a power cut at the f.Arg-th storage operation from now.
func (r *run) armCut(dv *device, f Fault) {
	dv.cutAfter, dv.cutFor, dv.cutKind = f.Arg, f.For, f.Kind
}

// powerOff takes a device down for d (silent: its peers are not told).
// A power cut loses what its storage had not synced.
func (r *run) powerOff(dv *device, d time.Duration, silent bool) {
	cutBy := Kind("")
	if dv.cut && !dv.down && dv.cutKind != "" {
		cutBy = dv.cutKind
		r.res.Injected[dv.cutKind]++
		dv.cutKind = ""
	}
	if r.cfg.bug != nil {
		r.cfg.bug(dv.mem, cutBy)
	}
	dv.offGen++
	gen := dv.offGen
	dv.down, dv.cut, dv.rebooting = true, true, false
	if silent {
		r.net.CrashSilent(dv.d.Node)
	} else {
		r.net.Crash(dv.d.Node)
	}
	dv.mem.Crash()
	r.net.After(d, func() {
		if dv.offGen == gen {
			r.powerOn(dv)
		}
	})
}

func (r *run) powerOn(dv *device) {
	dv.down = false
	r.net.Restart(dv.d.Node) // opens the store again (openStore)
}

// reboot is a receiver's restart into the image it switched to.
func (r *run) reboot(dv *device) {
	if dv.rebooting {
		return
	}
	dv.rebooting = true
	r.net.At(r.net.Now(), func() {
		if dv.rebooting && !dv.down {
			r.powerOff(dv, bootTime, false)
		}
	})
}

// onEvent watches the devices' OTA progress for armed faults.
func (r *run) onEvent(n *sim.Node, _ time.Time, ev mesh.Event) {
	p, ok := ev.(ota.Progress)
	if !ok {
		return
	}
	dv := r.byID[n.ID()]
	if dv == nil {
		return
	}
	switch p.State {
	case ota.StateDownloading:
		if len(r.pending) > 0 {
			r.net.At(r.net.Now(), r.relayCrashes)
		}
	case ota.StateVerifying:
		r.armNext(dv, &dv.armVerify)
	case ota.StateSwitching:
		r.armNext(dv, &dv.armSwitch)
	}
}

// relayCrashes fires the relay crashes waiting for a transfer, once one
// runs: each takes down a device that relays for others.
func (r *run) relayCrashes() {
	if len(r.pending) == 0 || !r.transferRunning() {
		return
	}
	var relays []*device
	for _, dv := range r.devs {
		if !dv.down && dv.d.Node.Up() && len(dv.d.Node.Neighbours()) >= 2 {
			relays = append(relays, dv)
		}
	}
	if len(relays) == 0 {
		return
	}
	for _, f := range r.pending {
		dv := relays[f.Node%len(relays)]
		if dv.down {
			continue
		}
		r.res.Injected[RelayCrash]++
		r.powerOff(dv, f.For, false)
	}
	r.pending = nil
}

func (r *run) transferRunning() bool {
	for _, dv := range r.devs {
		if rc := dv.d.Receiver; rc != nil && dv.d.Node.Up() && rc.State() == ota.StateDownloading {
			return true
		}
		if st := dv.d.Stock; st != nil && dv.d.Node.Up() && st.PartsReceived() > 0 {
			return true
		}
	}
	return false
}

// restartGateway takes the root down for d; it comes back with a new
// distributor that resumes the active campaigns from their record.
func (r *run) restartGateway(d time.Duration) {
	var specs []ota.CampaignSpec
	for _, c := range r.dist.Campaigns() {
		if !c.Active() {
			r.ended[c.ID] = c
			continue
		}
		img := r.im.target
		if c.ID == "v3" {
			img = r.im.newer
		}
		specs = append(specs, ota.CampaignSpec{ID: c.ID, Image: img, Mode: c.Mode, Method: c.Method, Progress: c.Nodes()})
	}
	r.rootDown = true
	r.rootGen++
	gen := r.rootGen
	r.net.Crash(r.root)
	r.net.After(d, func() {
		if r.rootGen != gen {
			return
		}
		r.rootDown = false
		r.resume = specs
		r.net.Restart(r.root)
	})
}

type nodePair [2]*sim.Node

func pair(a, b *sim.Node) nodePair {
	if a.ID() > b.ID() {
		a, b = b, a
	}
	return nodePair{a, b}
}

// applyLink sets the link model of a pair from the faults acting on it
// (f: the one starting now, whose figures it takes).
func (r *run) applyLink(k nodePair, f *Fault) {
	l := r.net.Model().Link
	if f != nil && f.Kind == Loss || r.lossCount[k] > 0 {
		l.Loss = r.lossPct[k]
		if f != nil && f.Kind == Loss {
			l.Loss = float64(f.Arg) / 100
			r.lossPct[k] = l.Loss
		}
	}
	if f != nil && f.Kind == Flap || r.flapCount[k] > 0 {
		l.FlapInterval = r.flapEvery[k]
		if f != nil && f.Kind == Flap {
			l.FlapInterval = max(f.For/time.Duration(max(f.Arg, 1)), time.Second)
			r.flapEvery[k] = l.FlapInterval
		}
	}
	_ = r.net.SetLink(k[0], k[1], l)
}

// subtree is the node and every node below it in the root's tree.
func (r *run) subtree(id uint32) []*sim.Node {
	mn := r.root.Mesh()
	if mn == nil {
		return nil
	}
	tree := mn.Tree()
	var find func(t *protocol.NodeTree) *protocol.NodeTree
	find = func(t *protocol.NodeTree) *protocol.NodeTree {
		if t.NodeID == id {
			return t
		}
		for i := range t.Subs {
			if s := find(&t.Subs[i]); s != nil {
				return s
			}
		}
		return nil
	}
	sub := find(&tree)
	if sub == nil {
		return []*sim.Node{r.net.Node(id)}
	}
	var out []*sim.Node
	var walk func(t *protocol.NodeTree)
	walk = func(t *protocol.NodeTree) {
		if nd := r.net.Node(t.NodeID); nd != nil && nd != r.root {
			out = append(out, nd)
		}
		for i := range t.Subs {
			walk(&t.Subs[i])
		}
	}
	walk(sub)
	return out
}

// applyPartitions splits the mesh by the partitions in force, in the
// order they started (a node in two goes with the later one).
func (r *run) applyPartitions() {
	r.net.Heal()
	if len(r.partitions) == 0 {
		return
	}
	keys := make([]int, 0, len(r.partitions))
	for k := range r.partitions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	groups := make([][]*sim.Node, 0, len(keys))
	for _, k := range keys {
		groups = append(groups, r.partitions[k])
	}
	r.net.Partition(groups...)
}

// heal ends every fault still in force once the last one's time is over:
// armed faults that never fired are dropped, links and radios get their
// model back, partitions end; devices still down come back on their own.
func (r *run) heal() {
	r.pending = nil
	for _, dv := range r.devs {
		dv.armVerify, dv.armSwitch, dv.armBoot = nil, nil, nil
		if !dv.cut {
			dv.cutAfter, dv.cutKind = -1, ""
		}
		dv.corruptAfter = -1
	}
	if len(r.partitions) > 0 {
		clear(r.partitions)
		r.applyPartitions()
	}
	for k := range r.lossCount {
		r.lossCount[k] = 0
		r.applyLink(k, nil)
	}
	for k := range r.flapCount {
		r.flapCount[k] = 0
		r.applyLink(k, nil)
	}
	for nd := range r.queueCount {
		r.queueCount[nd] = 0
		r.net.SetRadio(nd, r.baseRadio)
	}
}
