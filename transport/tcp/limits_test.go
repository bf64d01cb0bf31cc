package tcp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func maxConnections(n int) option { return func(c *tcp.Config) { c.MaxConnections = n } }

// ended reports whether the driver closed raw: a read ends with EOF or a
// reset within the wait (the driver sends nothing before its first node
// sync, 10 s after accepting).
func ended(t *testing.T, raw net.Conn) bool {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := raw.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// served waits until the driver's node has n connections.
func (n *testNode) served(want int) {
	n.t.Helper()
	n.waitFor(fmt.Sprintf("%d connections", want), func([]mesh.Event) bool {
		var got int
		n.d.Do(context.Background(), func(_ time.Time, nd *mesh.Node) { got = len(nd.Connections()) })
		return got == want
	})
}

// Connections beyond the listener's limit are closed at once and counted;
// a place freed by a closed connection is taken again.
func TestListenerConnectionLimit(t *testing.T) {
	a := start(t, 101, maxConnections(3), timing(mesh.Timing{APFirstSync: time.Hour}))
	var kept []net.Conn
	for range 3 {
		kept = append(kept, dialRaw(t, a.addr()))
	}
	a.served(3)
	for i := range 2 {
		if extra := dialRaw(t, a.addr()); !ended(t, extra) {
			t.Fatalf("connection %d over the limit of 3 was not closed", 4+i)
		}
	}
	if got := a.d.Stats().RefusedConnections; got != 2 {
		t.Errorf("RefusedConnections = %d, want 2", got)
	}
	kept[0].Close()
	a.served(2)
	again := dialRaw(t, a.addr())
	a.served(3)
	again.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := again.Read(make([]byte, 1)); err == nil || !err.(net.Error).Timeout() {
		t.Fatalf("connection into a freed place: %v, want it open", err)
	}
	if got := a.d.Stats().Accepted; got != 4 {
		t.Errorf("Accepted = %d, want 4", got)
	}
}

// A message longer than MaxMessageSize closes its connection as soon as
// the limit is passed, whether or not a NUL would follow; the driver and
// its other connections go on.
func TestOversizeMessageClosesTheConnection(t *testing.T) {
	const limit = 1024
	a := start(t, 101, maxMessage(limit))
	b := start(t, 202, connectTo(a.addr()), noListen())
	b.waitNodes(101)
	for i, tail := range []string{"\x00", ""} {
		raw := dialRaw(t, a.addr())
		big := `{"type":8,"from":555,"msg":"` + strings.Repeat("x", 4*limit) + `"}` + tail
		if _, err := raw.Write([]byte(big)); err != nil {
			t.Fatal(err)
		}
		if !ended(t, raw) {
			t.Fatalf("oversize message %d: connection not closed", i)
		}
		if got := a.d.Stats().OversizeMessages; got != uint64(i+1) {
			t.Fatalf("OversizeMessages = %d, want %d", got, i+1)
		}
	}
	if err := a.d.SendSingle(context.Background(), 202, "still here"); err != nil {
		t.Fatal(err)
	}
	b.waitReceived(protocol.TypeSingle, 101, "still here")
}

// A synced peer that stops reading is dropped once its queue passes
// MaxQueuedBytes, instead of holding that much (or more) per connection.
func TestStalledPeerIsDropped(t *testing.T) {
	const queue = 64 << 10
	a := start(t, 101, func(c *tcp.Config) { c.MaxQueuedBytes = queue })
	// The receive buffer stays at its default: shrunk below the loopback
	// MSS, the window opens a persist-timer tick at a time and draining the
	// data sent before the drop below takes tens of seconds on a busy machine.
	raw := dialRaw(t, a.addr())
	if _, err := raw.Write([]byte(`{"nodeId":555,"type":5,"dest":0,"from":555}` + "\x00")); err != nil {
		t.Fatal(err)
	}
	a.waitNodes(555)
	ctx := context.Background()
	msg := strings.Repeat("z", 8<<10)
	// The socket buffers take a few MB before the queue fills up; the peer
	// is gone long before 64 MB were sent.
	for i := 0; i < 8<<10 && a.d.Stats().QueueOverflows == 0; i++ {
		if err := a.d.SendBroadcast(ctx, msg, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.d.Stats().QueueOverflows; got != 1 {
		t.Fatalf("QueueOverflows = %d, want 1", got)
	}
	a.waitNodes()
	raw.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, raw); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("stalled peer's connection not closed")
		}
	}
}

// rssKiB is the process's resident set from /proc (0 where there is none).
func rssKiB() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Issue 8 attack 6: many connections each send a long message without a
// NUL and stay open. With a listener limit L and a message limit M the
// driver holds at most about L·M of it, and gives it back when they close.
func TestGarbageConnectionsMemoryBounded(t *testing.T) {
	const (
		conns   = 500
		limit   = 10
		maxMsg  = 64 << 10
		garbage = maxMsg - 1 // just under the limit: kept until a NUL comes
	)
	a := start(t, 101, maxConnections(limit), maxMessage(maxMsg), timing(mesh.Timing{APFirstSync: time.Hour}))
	base := heapInUse()
	junk := []byte(strings.Repeat("g", garbage))
	open := make([]net.Conn, 0, conns)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", a.addr(), waitTimeout)
			if err != nil {
				return // the backlog may refuse some while the acceptor closes others
			}
			c.SetWriteDeadline(time.Now().Add(waitTimeout))
			c.Write(junk) // fails on connections the driver refused
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	a.waitFor("every connection to be accepted or refused", func([]mesh.Event) bool {
		st := a.d.Stats()
		return st.Accepted+st.RefusedConnections >= uint64(len(open))
	})
	// The readers take the garbage in the background: the heap is sampled
	// until it stops growing (bounded; a measurement, not a condition).
	peak := heapInUse()
	rss := rssKiB()
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		h := heapInUse()
		if h <= peak+(16<<10) {
			peak = max(peak, h)
			break
		}
		peak = h
	}
	rss = max(rss, rssKiB())
	for _, c := range open {
		c.Close()
	}
	a.served(0)
	after := heapInUse()
	st := a.d.Stats()
	t.Logf("%d connections (%d open at once, limit %d, max message %d KiB): accepted %d, refused %d; heap %d KiB before, %d KiB under attack, %d KiB after; test process RSS %d KiB under attack",
		conns, len(open), limit, maxMsg>>10, st.Accepted, st.RefusedConnections, base>>10, peak>>10, after>>10, rss)
	if st.Accepted > limit+5 {
		t.Errorf("accepted %d connections with a limit of %d", st.Accepted, limit)
	}
	// L·M is 640 KiB; allow 8 MiB for buffers, goroutines and the test's
	// own sockets. Without the limits 500 readers hold about 64 MiB.
	if bound := uint64(8 << 20); peak > base+bound {
		t.Errorf("heap grew by %d KiB under attack, want at most %d KiB", (peak-base)>>10, bound>>10)
	}
	if after > base+(2<<20) {
		t.Errorf("heap %d KiB after the connections closed, %d KiB before", after>>10, base>>10)
	}
}
