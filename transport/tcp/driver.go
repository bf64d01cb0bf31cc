// Package tcp runs one mesh.Node over real TCP sockets.
//
// A Driver owns a node and one goroutine, the loop, which is the only code
// that ever steps the node. Everything else reports to the loop through
// channels: an acceptor (AP side), one dialer per configured peer (station
// side, reconnecting with backoff), and per connection a reader that splits
// the stream at NUL bytes and a writer that drains four priority queues.
// Node deadlines are served by a single timer reset to NextDeadline after
// every step. Slow work the node's plugins ask for (mesh.Work: disk writes,
// image checks) runs on a worker goroutine, so the loop keeps serving the
// mesh meanwhile; its result comes back to the loop as an input.
// Applications talk to the node through Do and the Send methods, which run
// inside the loop, and read Events.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// Errors returned by Driver methods.
var (
	// ErrStopped means the driver's Run has returned (or never will run
	// the request).
	ErrStopped = errors.New("tcp driver stopped")
	// ErrAlreadyRunning is returned by a second call of Run.
	ErrAlreadyRunning = errors.New("tcp driver already running")
	// ErrUnreachable is returned by SendSingle when the destination is not
	// in the node's layout.
	ErrUnreachable = errors.New("destination not reachable")
)

// Driver runs one mesh.Node over TCP. Create it with New, start it with
// Run; all other methods are safe for concurrent use.
type Driver struct {
	cfg  Config
	log  *slog.Logger
	node *mesh.Node // stepped only by the loop
	ln   net.Listener

	inbox  chan input
	calls  chan call
	events chan mesh.Event
	stop   chan struct{} // closed when the loop stops serving
	wg     sync.WaitGroup

	running  atomic.Bool
	nextConn atomic.Uint64
	counters counters
	// accepted counts the accepted connections from accept until the loop
	// has removed them, for Config.MaxConnections.
	accepted atomic.Int64

	conns map[mesh.ConnID]*conn // owned by the loop
	// work is the node's mesh.Work not yet taken by the worker, in order
	// (owned by the loop); jobs hands them over one at a time.
	work []mesh.Work
	jobs chan mesh.Work
}

// Stats are the driver's own counters (the node keeps its own, see
// mesh.Node.Stats).
type Stats struct {
	Accepted, Dialled uint64 // connections opened
	DialFailures      uint64
	EventsDropped     uint64 // oldest events discarded because Events was not read
	MessagesDropped   uint64 // outgoing messages discarded: queue full or connection gone
	OversizeMessages  uint64 // incoming messages over MaxMessageSize; each closed its connection
	ReadErrors        uint64 // connections ended by a read error other than a clean close
	// RefusedConnections were closed at once: the listener already served
	// MaxConnections.
	RefusedConnections uint64
	// QueueOverflows are connections dropped because their outgoing queue
	// passed MaxQueuedBytes (the peer stopped reading).
	QueueOverflows uint64
}

type counters struct {
	accepted, dialled, dialFailures, eventsDropped, messagesDropped, oversize, readErrors atomic.Uint64
	refused, queueOverflows                                                               atomic.Uint64
}

type inputKind int

const (
	inOpened inputKind = iota
	inMessage
	inClosed
	inWorkDone
)

type input struct {
	kind inputKind
	c    *conn
	msg  []byte
	err  error
	work mesh.Work // inWorkDone
}

type call struct {
	fn   func(now time.Time, n *mesh.Node)
	done chan struct{}
}

// New creates the node, adds the plugins, and binds the listen address (so
// Addr is known before Run). Call Run to start; if Run is never called,
// call Close to release the listener.
func New(cfg Config) (*Driver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	node := mesh.New(cfg.Node, time.Now())
	for _, p := range cfg.Plugins {
		node.Use(p)
	}
	d := &Driver{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.Node.ID),
		node:   node,
		inbox:  make(chan input, 256),
		calls:  make(chan call),
		events: make(chan mesh.Event, cfg.EventBuffer),
		stop:   make(chan struct{}),
		conns:  make(map[mesh.ConnID]*conn),
		jobs:   make(chan mesh.Work),
	}
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("mesh node %d: listen on %s: %w", cfg.Node.ID, cfg.Listen, err)
		}
		d.ln = ln
	}
	return d, nil
}

// ID is the node's id.
func (d *Driver) ID() uint32 { return d.cfg.Node.ID }

// Addr is the address the driver accepts connections on, or nil if it
// does not listen.
func (d *Driver) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// Close releases the listener of a driver whose Run was never called.
// It is not needed (and does nothing useful) after Run.
func (d *Driver) Close() error {
	if d.ln == nil || d.running.Load() {
		return nil
	}
	return d.ln.Close()
}

// Events delivers what the node reports (mesh.Event values, plugin events
// included) in order. The channel holds Config.EventBuffer events; when it
// is full the driver discards the oldest one and counts it in
// Stats.EventsDropped, so a slow or absent reader never stalls the node.
// The channel is closed when Run returns.
func (d *Driver) Events() <-chan mesh.Event { return d.events }

// Stats returns the driver's counters.
func (d *Driver) Stats() Stats {
	c := &d.counters
	return Stats{
		Accepted:         c.accepted.Load(),
		Dialled:          c.dialled.Load(),
		DialFailures:     c.dialFailures.Load(),
		EventsDropped:    c.eventsDropped.Load(),
		MessagesDropped:  c.messagesDropped.Load(),
		OversizeMessages: c.oversize.Load(),
		ReadErrors:       c.readErrors.Load(),

		RefusedConnections: c.refused.Load(),
		QueueOverflows:     c.queueOverflows.Load(),
	}
}

// Do runs fn inside the loop, with the time the loop passes to the node,
// and returns when fn has returned. fn may query or step the node (NodeList,
// Tree, Send*, plugin calls) but must not block or keep n. Outputs of fn
// (messages, events) are handled as for any other step. Do waits until the
// loop takes the call or ctx ends; it returns ErrStopped once Run has
// returned.
func (d *Driver) Do(ctx context.Context, fn func(now time.Time, n *mesh.Node)) error {
	c := call{fn: fn, done: make(chan struct{})}
	select {
	case d.calls <- c:
	case <-d.stop:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loop runs a call it took before doing anything else.
	<-c.done
	return nil
}

// SendBroadcast sends a BROADCAST (8) package with msg to every node of
// the mesh; with includeSelf the node also delivers it to itself.
func (d *Driver) SendBroadcast(ctx context.Context, msg string, includeSelf bool) error {
	return d.Do(ctx, func(now time.Time, n *mesh.Node) {
		n.SendBroadcast(now, msg, includeSelf)
	})
}

// SendSingle sends a SINGLE (9) package with msg to node dest. It returns
// ErrUnreachable if dest is not in the node's current layout.
func (d *Driver) SendSingle(ctx context.Context, dest uint32, msg string) error {
	var ok bool
	if err := d.Do(ctx, func(now time.Time, n *mesh.Node) {
		ok = n.SendSingle(now, dest, msg)
	}); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("send to node %d: %w", dest, ErrUnreachable)
	}
	return nil
}

// SendRaw routes an already encoded package by its own type, routing and
// dest keys.
func (d *Driver) SendRaw(ctx context.Context, msg []byte) error {
	var err error
	if derr := d.Do(ctx, func(now time.Time, n *mesh.Node) {
		err = n.SendRaw(now, msg)
	}); derr != nil {
		return derr
	}
	return err
}

// SendPackage encodes p and routes it by its type, routing and dest.
func (d *Driver) SendPackage(ctx context.Context, p protocol.Package) error {
	var err error
	if derr := d.Do(ctx, func(now time.Time, n *mesh.Node) {
		err = n.SendPackage(now, p)
	}); derr != nil {
		return derr
	}
	return err
}

// submit hands an input to the loop; false if the loop has stopped.
func (d *Driver) submit(in input) bool {
	select {
	case d.inbox <- in:
		return true
	case <-d.stop:
		return false
	}
}

// Run runs the node until ctx ends, then closes every connection and the
// listener, waits for all of its goroutines, closes Events and returns nil.
// It returns an error only if it cannot run at all.
func (d *Driver) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	d.log.Info("mesh node starting", "listen", d.Addr(), "connect", d.cfg.Connect)
	if d.ln != nil {
		d.wg.Go(func() { d.acceptLoop(ctx) })
	}
	for _, addr := range d.cfg.Connect {
		d.wg.Go(func() { d.dialLoop(ctx, addr) })
	}
	d.wg.Go(d.runWorker)

	timer := time.NewTimer(0)
	timer.Stop()
	d.step(timer)
	for {
		var jobs chan mesh.Work // nil, so never ready, while there is no work
		var next mesh.Work
		if len(d.work) > 0 {
			jobs, next = d.jobs, d.work[0]
		}
		select {
		case <-ctx.Done():
			d.shutdown()
			return nil
		case in := <-d.inbox:
			d.handle(in)
		case c := <-d.calls:
			c.fn(time.Now(), d.node)
			close(c.done)
		case <-timer.C:
			d.node.Tick(time.Now())
		case jobs <- next:
			d.work = d.work[1:]
			continue
		}
		d.step(timer)
	}
}

// runWorker does the node's slow work (mesh.Work: a store's fsyncs and
// image checks) off the loop, one at a time in the order asked, and hands
// each result back to the loop as an input. A work in progress when the
// driver stops is finished, its result dropped; Run returns after it.
func (d *Driver) runWorker() {
	for {
		select {
		case w := <-d.jobs:
			err := w.Do()
			if !d.submit(input{kind: inWorkDone, work: w, err: err}) {
				return
			}
		case <-d.stop:
			return
		}
	}
}

// handle feeds one input from a connection goroutine into the node.
func (d *Driver) handle(in input) {
	c := in.c
	switch in.kind {
	case inOpened:
		d.conns[c.id] = c
		c.inNode = true
		d.wg.Go(func() { d.runWriter(c) })
		d.wg.Go(func() { d.runReader(c) })
		d.log.Info("connection opened", "conn", c.id, "remote", c.remote, "station", c.station)
		d.node.Connect(time.Now(), c.id, c.station)
	case inMessage:
		if c.inNode {
			d.node.Receive(time.Now(), c.id, in.msg)
		}
	case inWorkDone:
		d.node.WorkDone(time.Now(), in.work, in.err)
	case inClosed:
		if in.err != nil && !isClosedErr(in.err) {
			d.counters.readErrors.Add(1)
			d.log.Warn("connection read failed", "conn", c.id, "remote", c.remote, "err", in.err)
		} else {
			d.log.Info("connection closed", "conn", c.id, "remote", c.remote)
		}
		delete(d.conns, c.id)
		if !c.station {
			d.accepted.Add(-1)
		}
		c.out.stop()
		c.nc.Close()
		if c.inNode {
			c.inNode = false
			d.node.Disconnect(time.Now(), c.id)
		}
		if c.ended != nil {
			c.ended <- c.synced // buffered: never blocks
		}
	}
}

// step carries out what the node wants after an input, then re-arms the
// deadline timer.
func (d *Driver) step(timer *time.Timer) {
	rd := d.node.Ready()
	d.work = append(d.work, rd.Work...)
	for _, m := range rd.Messages {
		c := d.conns[m.Conn]
		if c == nil || !c.inNode {
			d.counters.messagesDropped.Add(1)
			continue
		}
		switch c.out.push(m.Priority, m.Data) {
		case pushClosing:
			d.counters.messagesDropped.Add(1)
		case pushFull:
			// The peer stopped reading (or reads slower than the mesh
			// talks to it): drop it rather than hold more for it.
			d.counters.messagesDropped.Add(1)
			d.counters.queueOverflows.Add(1)
			d.log.Warn("peer not reading, connection closed", "conn", c.id, "remote", c.remote, "queued_bytes_max", d.cfg.MaxQueuedBytes)
			c.out.stop()
			c.nc.Close() // the reader reports it and the node forgets it
		}
	}
	for _, id := range rd.Close {
		if c := d.conns[id]; c != nil && c.inNode {
			c.inNode = false
			// Let the writer finish what the node queued (often the
			// last reply) before it closes the socket; the reader then
			// reports the close and the connection is removed.
			c.out.drain()
			d.log.Info("node closed connection", "conn", id, "remote", c.remote)
		}
	}
	for _, ev := range rd.Events {
		switch e := ev.(type) {
		case mesh.NewConnection:
			if c := d.conns[e.Conn]; c != nil {
				c.synced = true
			}
		case mesh.DroppedConnection:
			if e.Reason != "closed" {
				d.log.Warn("connection dropped", "conn", e.Conn, "peer", e.NodeID, "reason", e.Reason)
			}
		case mesh.InvalidPackage:
			// The node reports these at most once per connection per
			// mesh.InvalidReportInterval; Stats().ParseErrors has them all.
			remote := ""
			if c := d.conns[e.Conn]; c != nil {
				remote = c.remote
			}
			d.log.Warn("dropped invalid package", "conn", e.Conn, "remote", remote, "node", e.NodeID,
				"reason", e.Reason, "err", e.Err, "suppressed_since_last", e.Suppressed)
		}
		d.emit(ev)
	}
	if next := d.node.NextDeadline(); next.IsZero() {
		timer.Stop()
	} else {
		timer.Reset(time.Until(next))
	}
}

// emit delivers ev to Events, discarding the oldest undelivered event if
// the consumer has fallen behind. Only the loop sends on d.events, so after
// making room the second send cannot block.
func (d *Driver) emit(ev mesh.Event) {
	select {
	case d.events <- ev:
		return
	default:
	}
	select {
	case <-d.events:
		d.counters.eventsDropped.Add(1)
	default:
	}
	select {
	case d.events <- ev:
	default:
		d.counters.eventsDropped.Add(1)
	}
}

// shutdown closes everything and waits for every goroutine of the driver.
func (d *Driver) shutdown() {
	d.log.Info("mesh node stopping")
	close(d.stop)
	if d.ln != nil {
		d.ln.Close()
	}
	for _, c := range d.conns {
		c.out.stop()
		c.nc.Close()
	}
	d.wg.Wait()
	// A connection handed over just as the loop stopped was never started.
	for {
		select {
		case in := <-d.inbox:
			if in.kind == inOpened {
				in.c.nc.Close()
			}
			continue
		default:
		}
		break
	}
	close(d.events)
}

// newConn wraps a fresh socket.
func (d *Driver) newConn(nc net.Conn, station bool) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		// Mesh messages are small and latency-bound; stock nodes set it too.
		if err := tc.SetNoDelay(true); err != nil {
			d.log.Warn("set TCP_NODELAY failed", "remote", nc.RemoteAddr(), "err", err)
		}
	}
	return &conn{
		id:      mesh.ConnID(d.nextConn.Add(1)),
		nc:      nc,
		station: station,
		remote:  nc.RemoteAddr().String(),
		out:     newOutQueue(d.cfg.MaxQueuedBytes),
	}
}

// acceptLoop accepts AP-side connections until the listener is closed.
func (d *Driver) acceptLoop(ctx context.Context) {
	var pause time.Duration
	var refused refusedLog
	for {
		nc, err := d.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than spin or give up.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			d.log.Warn("accept failed", "err", err, "retry_in", pause)
			if !sleepCtx(ctx, pause) {
				return
			}
			continue
		}
		pause = 0
		if d.accepted.Load() >= int64(d.cfg.MaxConnections) {
			d.counters.refused.Add(1)
			refused.note(d.log, d.cfg.MaxConnections, nc.RemoteAddr())
			nc.Close()
			continue
		}
		d.accepted.Add(1)
		d.counters.accepted.Add(1)
		if !d.submit(input{kind: inOpened, c: d.newConn(nc, false)}) {
			nc.Close()
			return
		}
	}
}

// refusedLog logs refused connections: the first at once, then at most one
// summary per interval, so a flood of connections does not flood the log.
type refusedLog struct {
	last   time.Time
	missed int
}

const refusedLogInterval = 10 * time.Second

func (r *refusedLog) note(log *slog.Logger, limit int, remote net.Addr) {
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < refusedLogInterval {
		r.missed++
		return
	}
	log.Warn("connection refused: listener at its limit", "remote", remote, "max_connections", limit, "refused_since_last_log", r.missed)
	r.last, r.missed = now, 0
}

// dialLoop keeps one station-side connection to addr open, reconnecting
// with backoff whenever it fails or ends. The schedule starts over after a
// connection that completed a node sync.
func (d *Driver) dialLoop(ctx context.Context, addr string) {
	bo := newBackoff(d.cfg.Backoff)
	dialer := net.Dialer{Timeout: d.cfg.DialTimeout}
	for {
		nc, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.counters.dialFailures.Add(1)
			wait := bo.delay()
			d.log.Debug("connect failed", "addr", addr, "err", err, "retry_in", wait)
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		d.counters.dialled.Add(1)
		c := d.newConn(nc, true)
		c.ended = make(chan bool, 1)
		if !d.submit(input{kind: inOpened, c: c}) {
			nc.Close()
			return
		}
		select {
		case synced := <-c.ended:
			if synced {
				bo.reset()
			}
		case <-ctx.Done():
			return
		}
		wait := bo.delay()
		d.log.Info("reconnecting", "addr", addr, "in", wait)
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// sleepCtx waits for d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
