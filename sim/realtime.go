package sim

import (
	"context"
	"errors"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// Realtime runs a Network against the wall clock, for demos and for
// driving a gateway with a simulated mesh: virtual time follows real time
// (times Speed), and other goroutines act on the network through Do.
//
// The simulation stays deterministic in what each node does given its
// inputs; which wall-clock instant an outside request lands on is not.
type Realtime struct {
	net   *Network
	speed float64
	step  time.Duration
	reqs  chan func()
	done  chan struct{}
	// held stops virtual time (Hold) while Do requests are still served;
	// rebase restarts the wall-clock reference on Release, so the clock
	// does not jump over the held time. Both belong to Run's goroutine.
	held, rebase bool
}

// RealtimeStep is how often the runner catches virtual time up with the
// wall clock: fine enough for millisecond-scale protocol timers to be seen
// on time to within a step.
const RealtimeStep = 5 * time.Millisecond

// ErrRealtimeStopped is returned by Do after Run has returned.
var ErrRealtimeStopped = errors.New("sim: realtime runner stopped")

// NewRealtime wraps net; speed 1 is real time, 10 runs ten times faster.
func NewRealtime(net *Network, speed float64) *Realtime {
	if speed <= 0 {
		speed = 1
	}
	return &Realtime{net: net, speed: speed, step: RealtimeStep, reqs: make(chan func()), done: make(chan struct{})}
}

// Network is the wrapped network; touch it only inside Do.
func (r *Realtime) Network() *Network { return r.net }

// Run advances the network with the wall clock until ctx ends.
func (r *Realtime) Run(ctx context.Context) error {
	defer close(r.done)
	startWall := time.Now()
	startVirt := r.net.Now()
	tick := time.NewTicker(r.step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case fn := <-r.reqs:
			fn()
		case <-tick.C:
			if r.held {
				continue
			}
			if r.rebase {
				r.rebase = false
				startWall, startVirt = time.Now(), r.net.Now()
			}
			elapsed := time.Duration(float64(time.Since(startWall)) * r.speed)
			r.net.Run(startVirt.Add(elapsed))
		}
	}
}

// Hold stops virtual time until Release: Do still runs requests, which
// may advance the network themselves (Network.Run), so a test can step
// through a moment it must not miss however loaded the machine is.
func (r *Realtime) Hold(ctx context.Context) error {
	return r.Do(ctx, func(*Network) { r.held = true })
}

// Release lets virtual time follow the wall clock again, from where it
// stands: the held wall time is skipped, not caught up.
func (r *Realtime) Release(ctx context.Context) error {
	return r.Do(ctx, func(*Network) { r.held, r.rebase = false, true })
}

// Do runs fn on the runner's goroutine, between simulation steps, and
// waits for it.
func (r *Realtime) Do(ctx context.Context, fn func(net *Network)) error {
	finished := make(chan struct{})
	select {
	case r.reqs <- func() { fn(r.net); close(finished) }:
	case <-r.done:
		return ErrRealtimeStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NodeDriver gives one simulated node the shape of a real driver
// (transport/tcp.Driver): Do, Send and Events, so a gateway can run on a
// simulated mesh unchanged.
type NodeDriver struct {
	rt     *Realtime
	id     uint32
	events chan mesh.Event
}

// NodeDriver returns a driver for node id. Call before Run: it registers
// an event listener on the network.
func (r *Realtime) NodeDriver(id uint32, buffer int) *NodeDriver {
	d := &NodeDriver{rt: r, id: id, events: make(chan mesh.Event, buffer)}
	r.net.OnEvent(func(n *Node, _ time.Time, ev mesh.Event) {
		if n.ID() != id {
			return
		}
		select {
		case d.events <- ev:
		default: // a slow consumer loses events rather than stalling the simulation
		}
	})
	return d
}

// ID is the node's id.
func (d *NodeDriver) ID() uint32 { return d.id }

// Events are the node's events.
func (d *NodeDriver) Events() <-chan mesh.Event { return d.events }

// Do runs fn with the node's state machine, inside the simulation.
func (d *NodeDriver) Do(ctx context.Context, fn func(now time.Time, n *mesh.Node)) error {
	var err error
	if derr := d.rt.Do(ctx, func(net *Network) {
		nd := net.Node(d.id)
		if nd == nil {
			err = ErrNodeDown
			return
		}
		err = nd.Do(fn)
	}); derr != nil {
		return derr
	}
	return err
}

// Run waits for ctx: the Realtime runner does the work.
func (d *NodeDriver) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-d.rt.done:
	}
	return nil
}
