package tcp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for a condition; meeting it means the
// condition never came true (a bug), not that the machine is slow.
const waitTimeout = 15 * time.Second

// testNode is a Driver running in the background with its events recorded.
type testNode struct {
	t      testing.TB
	d      *tcp.Driver
	cancel context.CancelFunc
	done   chan struct{} // Run returned
	runErr error

	mu      sync.Mutex
	events  []mesh.Event
	changed chan struct{} // closed and replaced on every event
	drained chan struct{} // the collector saw Events closed
}

type option func(*tcp.Config)

func connectTo(addrs ...string) option {
	return func(c *tcp.Config) { c.Connect = append(c.Connect, addrs...) }
}
func listenOn(addr string) option { return func(c *tcp.Config) { c.Listen = addr } }
func noListen() option            { return func(c *tcp.Config) { c.Listen = "" } }
func maxMessage(n int) option     { return func(c *tcp.Config) { c.MaxMessageSize = n } }
func eventBuffer(n int) option    { return func(c *tcp.Config) { c.EventBuffer = n } }
func timing(t mesh.Timing) option { return func(c *tcp.Config) { c.Node.Timing = t } }
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// start runs a node listening on a free loopback port (unless noListen),
// reconnecting fast, and stops it when the test ends.
func start(t testing.TB, id uint32, opts ...option) *testNode {
	t.Helper()
	return startCollecting(t, id, true, opts...)
}

func startCollecting(t testing.TB, id uint32, collect bool, opts ...option) *testNode {
	t.Helper()
	cfg := tcp.Config{
		Node:    mesh.Config{ID: id},
		Listen:  "127.0.0.1:0",
		Backoff: tcp.Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		Logger:  testLogger(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := tcp.New(cfg)
	if err != nil {
		t.Fatalf("node %d: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{t: t, d: d, cancel: cancel, done: make(chan struct{}),
		changed: make(chan struct{}), drained: make(chan struct{})}
	go func() {
		n.runErr = d.Run(ctx)
		close(n.done)
	}()
	if collect {
		go n.collect()
	} else {
		close(n.drained)
	}
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) collect() {
	defer close(n.drained)
	for ev := range n.d.Events() {
		n.mu.Lock()
		n.events = append(n.events, ev)
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

func (n *testNode) addr() string { return n.d.Addr().String() }

// stop cancels the node and waits until Run has returned and every event
// was collected. It may be called more than once.
func (n *testNode) stop() {
	n.t.Helper()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(waitTimeout):
		n.t.Fatalf("node %d: Run did not return after cancel", n.d.ID())
	}
	<-n.drained
	if n.runErr != nil {
		n.t.Errorf("node %d: Run: %v", n.d.ID(), n.runErr)
	}
}

// waitFor waits until cond, evaluated on the events so far and again after
// every new event (and at least every 50 ms, for conditions on node state),
// holds.
func (n *testNode) waitFor(what string, cond func(events []mesh.Event) bool) {
	n.t.Helper()
	deadline := time.After(waitTimeout)
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		n.mu.Lock()
		events := slices.Clone(n.events)
		changed := n.changed
		n.mu.Unlock()
		if cond(events) {
			return
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline:
			n.t.Fatalf("node %d: timed out waiting for %s; events: %s", n.d.ID(), what, n.describe())
		}
	}
}

func (n *testNode) describe() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, ev := range n.events {
		fmt.Fprintf(&b, "\n\t%T%+v", ev, ev)
	}
	return b.String()
}

// nodeList asks the running node for its view of the mesh.
func (n *testNode) nodeList() []uint32 {
	n.t.Helper()
	var ids []uint32
	if err := n.d.Do(context.Background(), func(_ time.Time, nd *mesh.Node) { ids = nd.NodeList(false) }); err != nil {
		n.t.Fatalf("node %d: Do: %v", n.d.ID(), err)
	}
	slices.Sort(ids)
	return ids
}

// waitNodes waits until the node knows exactly the given other nodes.
func (n *testNode) waitNodes(ids ...uint32) {
	n.t.Helper()
	slices.Sort(ids)
	n.waitFor(fmt.Sprintf("node list %v", ids), func([]mesh.Event) bool {
		return slices.Equal(n.nodeList(), ids)
	})
}

func count(events []mesh.Event, match func(mesh.Event) bool) int {
	c := 0
	for _, ev := range events {
		if match(ev) {
			c++
		}
	}
	return c
}

func received(typ int, from uint32, msg string) func(mesh.Event) bool {
	return func(ev mesh.Event) bool {
		m, ok := ev.(mesh.MessageReceived)
		return ok && m.Type == typ && m.From == from && m.Msg == msg
	}
}

func (n *testNode) waitReceived(typ int, from uint32, msg string) {
	n.t.Helper()
	n.waitFor(fmt.Sprintf("type %d message %q from %d", typ, msg, from), func(evs []mesh.Event) bool {
		return count(evs, received(typ, from, msg)) > 0
	})
}

func TestChainDeliversBroadcastAndSingle(t *testing.T) {
	a := start(t, 101)
	b := start(t, 202, connectTo(a.addr()))
	// 303 joins only once 202 has synced with 101. Otherwise 202 may sync
	// 303 before 101 and then has no reason to tell 101 until 101's first
	// periodic request 10 s later (the stock syncLayout rule, §4.2).
	b.waitNodes(101)
	c := start(t, 303, connectTo(b.addr()), noListen())
	a.waitNodes(202, 303)
	b.waitNodes(101, 303)
	c.waitNodes(101, 202)

	ctx := context.Background()
	if err := c.d.SendBroadcast(ctx, "hello from 303", false); err != nil {
		t.Fatal(err)
	}
	a.waitReceived(protocol.TypeBroadcast, 303, "hello from 303")
	b.waitReceived(protocol.TypeBroadcast, 303, "hello from 303")

	// Relayed by 202.
	if err := a.d.SendSingle(ctx, 303, "single from 101"); err != nil {
		t.Fatal(err)
	}
	c.waitReceived(protocol.TypeSingle, 101, "single from 101")
	if err := c.d.SendSingle(ctx, 101, "reply from 303"); err != nil {
		t.Fatal(err)
	}
	a.waitReceived(protocol.TypeSingle, 303, "reply from 303")

	if err := a.d.SendSingle(ctx, 999, "nobody"); !errors.Is(err, tcp.ErrUnreachable) {
		t.Fatalf("SendSingle to an unknown node: err = %v, want ErrUnreachable", err)
	}
}

func TestStarDeliversBroadcastAndSingle(t *testing.T) {
	hub := start(t, 1)
	leaves := []*testNode{
		start(t, 2, connectTo(hub.addr()), noListen()),
		start(t, 3, connectTo(hub.addr()), noListen()),
		start(t, 4, connectTo(hub.addr()), noListen()),
	}
	hub.waitNodes(2, 3, 4)
	leaves[0].waitNodes(1, 3, 4)
	leaves[1].waitNodes(1, 2, 4)
	leaves[2].waitNodes(1, 2, 3)

	ctx := context.Background()
	if err := leaves[0].d.SendBroadcast(ctx, "to all", false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{hub, leaves[1], leaves[2]} {
		n.waitReceived(protocol.TypeBroadcast, 2, "to all")
	}
	if err := leaves[1].d.SendSingle(ctx, 4, "3 to 4"); err != nil {
		t.Fatal(err)
	}
	leaves[2].waitReceived(protocol.TypeSingle, 3, "3 to 4")
}

func TestPeerRestartIsReconnected(t *testing.T) {
	a := start(t, 101)
	addr := a.addr()
	b := start(t, 202, connectTo(addr), noListen())
	b.waitNodes(101)

	a.stop()
	b.waitFor("dropped connection to 101", func(evs []mesh.Event) bool {
		return count(evs, func(ev mesh.Event) bool {
			d, ok := ev.(mesh.DroppedConnection)
			return ok && d.NodeID == 101
		}) > 0
	})
	b.waitNodes()

	a2 := start(t, 101, listenOn(addr))
	b.waitNodes(101)
	a2.waitNodes(202)
	b.waitFor("a second new connection to 101", func(evs []mesh.Event) bool {
		return count(evs, func(ev mesh.Event) bool {
			c, ok := ev.(mesh.NewConnection)
			return ok && c.NodeID == 101
		}) == 2
	})
	if err := a2.d.SendSingle(context.Background(), 202, "after restart"); err != nil {
		t.Fatal(err)
	}
	b.waitReceived(protocol.TypeSingle, 101, "after restart")
}

// rawServer accepts connections and hands them to the test.
func rawServer(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln, conns
}

func accept(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no connection arrived")
		return nil
	}
}

// A peer that never answers node sync is closed by the node (NODE_TIMEOUT)
// and the station side connects again.
func TestNodeClosedConnectionIsRedialled(t *testing.T) {
	ln, conns := rawServer(t)
	start(t, 202, connectTo(ln.Addr().String()), noListen(),
		timing(mesh.Timing{NodeTimeout: 100 * time.Millisecond}))

	first := accept(t, conns)
	first.SetReadDeadline(time.Now().Add(waitTimeout))
	r := protocol.NewReader(first, 0)
	msg, err := r.Next()
	if err != nil {
		t.Fatalf("reading the node's first message: %v", err)
	}
	if h, err := protocol.ParseHeader(msg); err != nil || h.Type != protocol.TypeNodeSyncRequest || h.From != 202 {
		t.Fatalf("first message = %s (%v), want a node sync request from 202", msg, err)
	}
	for {
		if _, err = r.Next(); err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("the unanswered connection ended with %v, want EOF (closed by the node)", err)
	}
	second := accept(t, conns)
	second.SetReadDeadline(time.Now().Add(waitTimeout))
	if msg, err := protocol.NewReader(second, 0).Next(); err != nil {
		t.Fatalf("reading from the redialled connection: %v", err)
	} else if h, _ := protocol.ParseHeader(msg); h.Type != protocol.TypeNodeSyncRequest {
		t.Fatalf("redialled connection starts with %s, want a node sync request", msg)
	}
}

// A consumer that never reads Events does not stall the node.
func TestUnreadEventsDoNotBlockTheNode(t *testing.T) {
	a := startCollecting(t, 101, false, eventBuffer(2))
	b := start(t, 202, connectTo(a.addr()), noListen())
	b.waitNodes(101)
	ctx := context.Background()
	for i := range 20 {
		if err := b.d.SendBroadcast(ctx, fmt.Sprint("m", i), false); err != nil {
			t.Fatal(err)
		}
	}
	// At least new connection, changed connections and 20 receives were
	// emitted into a buffer of 2.
	a.waitFor("events to be dropped", func([]mesh.Event) bool {
		return a.d.Stats().EventsDropped >= 20
	})
	if err := a.d.SendSingle(ctx, 202, "still alive"); err != nil {
		t.Fatal(err)
	}
	b.waitReceived(protocol.TypeSingle, 101, "still alive")
	if n := len(a.d.Events()); n > 2 {
		t.Fatalf("Events holds %d, more than its capacity 2", n)
	}
}

func TestShutdownClosesEverything(t *testing.T) {
	a := start(t, 101)
	b := start(t, 202, connectTo(a.addr()))
	c := start(t, 303, connectTo(b.addr()), noListen())
	c.waitNodes(101, 202)

	raw, err := net.Dial("tcp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Make sure the loop has taken the raw connection before stopping.
	a.waitFor("the raw connection to be served", func([]mesh.Event) bool {
		var n int
		a.d.Do(context.Background(), func(_ time.Time, nd *mesh.Node) { n = len(nd.Connections()) })
		return n == 2
	})

	addr := a.addr()
	for _, n := range []*testNode{a, b, c} {
		n.stop()
	}
	raw.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("a connection of the stopped node was not closed: %v", err)
	}
	if err := a.d.Do(context.Background(), func(time.Time, *mesh.Node) {}); !errors.Is(err, tcp.ErrStopped) {
		t.Fatalf("Do after shutdown: err = %v, want ErrStopped", err)
	}
	if _, ok := <-a.d.Events(); ok {
		t.Fatal("Events not closed after shutdown")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("listener still accepting after shutdown")
	}
	goleak.VerifyNone(t)
}

func TestRunTwiceFails(t *testing.T) {
	a := start(t, 101)
	a.waitFor("the node to run", func([]mesh.Event) bool {
		return a.d.Do(context.Background(), func(time.Time, *mesh.Node) {}) == nil
	})
	if err := a.d.Run(context.Background()); !errors.Is(err, tcp.ErrAlreadyRunning) {
		t.Fatalf("second Run: err = %v, want ErrAlreadyRunning", err)
	}
}

// recordingPlugin keeps the packages of one type it is handed. It runs
// inside the node's loop; the test reads it through Do.
type recordingPlugin struct {
	typ  int
	host mesh.Host
	got  []string
}

func (p *recordingPlugin) Attach(h mesh.Host) { p.host = h }
func (p *recordingPlugin) Types() []int       { return []int{p.typ} }
func (p *recordingPlugin) HandlePackage(_ time.Time, _ mesh.ConnID, _ protocol.Header, raw []byte) {
	p.got = append(p.got, string(raw))
}
func (p *recordingPlugin) Tick(time.Time)          {}
func (p *recordingPlugin) NextDeadline() time.Time { return time.Time{} }

func TestPluginsReceiveRawPackages(t *testing.T) {
	plugin := &recordingPlugin{typ: 200}
	a := start(t, 101, func(c *tcp.Config) { c.Plugins = []mesh.Plugin{plugin} })
	b := start(t, 202, connectTo(a.addr()), noListen())
	b.waitNodes(101)
	if plugin.host == nil || plugin.host.ID() != 101 {
		t.Fatal("plugin not attached to node 101")
	}

	msg := `{"type":200,"routing":1,"dest":101,"from":202,"temperature":21.5}`
	if err := b.d.SendRaw(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	a.waitFor("the plugin to get the package", func([]mesh.Event) bool {
		var got []string
		a.d.Do(context.Background(), func(time.Time, *mesh.Node) { got = slices.Clone(plugin.got) })
		return slices.Equal(got, []string{msg})
	})
	if err := b.d.SendRaw(context.Background(), []byte(`{"type":200,"routing":1,"dest":999}`)); err == nil {
		t.Fatal("SendRaw to an unknown node: no error")
	}
	if err := b.d.SendRaw(context.Background(), []byte(`not json`)); err == nil {
		t.Fatal("SendRaw of garbage: no error")
	}
}

// lockedBuffer collects log output written from the driver's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

// A malformed package is counted and logged; a flood of them is logged
// once per connection per mesh.InvalidReportInterval.
func TestInvalidPackageIsCountedAndLogged(t *testing.T) {
	var logs lockedBuffer
	logger := func(c *tcp.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }
	a := start(t, 101, logger, timing(mesh.Timing{NodeTimeout: 10 * waitTimeout}))
	raw, err := net.Dial("tcp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(waitTimeout))
	r := protocol.NewReader(raw, 0)
	// send writes msgs and a node sync request, then waits for the reply:
	// everything before it has been processed.
	send := func(msgs ...string) {
		t.Helper()
		sync := `{"nodeId":555,"type":5,"dest":0,"from":555}`
		if _, err := raw.Write([]byte(strings.Join(append(msgs, sync), "\x00") + "\x00")); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := r.Next()
			if err != nil {
				t.Fatalf("waiting for the node sync reply: %v", err)
			}
			if h, _ := protocol.ParseHeader(msg); h.Type == protocol.TypeNodeSyncReply && h.Dest == 555 {
				return
			}
		}
	}
	invalid := func() uint64 {
		var s mesh.Stats
		if err := a.d.Do(context.Background(), func(_ time.Time, n *mesh.Node) { s = n.Stats() }); err != nil {
			t.Fatal(err)
		}
		return s.InvalidPackages.Header
	}
	send(`{"type":8,"from":555,"msg":"unterminated`)
	if got := invalid(); got != 1 {
		t.Fatalf("invalid packages counted: %d, want 1", got)
	}
	if got := logs.lines("dropped invalid package"); got != 1 {
		t.Fatalf("%d log lines for one invalid package, want 1:\n%s", got, logs.buf.String())
	}
	flood := make([]string, 1000)
	for i := range flood {
		flood[i] = "garbage"
	}
	send(flood...)
	if got := invalid(); got != 1001 {
		t.Fatalf("invalid packages counted: %d, want 1001", got)
	}
	if got := logs.lines("dropped invalid package"); got != 1 {
		t.Fatalf("%d log lines after a flood of 1000 within a minute, want still 1", got)
	}
}
