package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// eventCounter is a plugin that sees every event its node emits, inside
// the driver's loop, so a test knows exactly what the console was given.
type eventCounter struct {
	mu         sync.Mutex
	all        int
	broadcasts int
	wantBcasts int
	synced     chan struct{} // closed at the first NewConnection
	allBcasts  chan struct{} // closed when wantBcasts broadcasts arrived
}

func newEventCounter(wantBroadcasts int) *eventCounter {
	return &eventCounter{wantBcasts: wantBroadcasts, synced: make(chan struct{}), allBcasts: make(chan struct{})}
}

func (*eventCounter) Attach(mesh.Host)                                              {}
func (*eventCounter) Types() []int                                                  { return nil }
func (*eventCounter) HandlePackage(time.Time, mesh.ConnID, protocol.Header, []byte) {}
func (*eventCounter) Tick(time.Time)                                                {}
func (*eventCounter) NextDeadline() time.Time                                       { return time.Time{} }

func (c *eventCounter) OnEvent(_ time.Time, ev mesh.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all++
	switch e := ev.(type) {
	case mesh.NewConnection:
		select {
		case <-c.synced:
		default:
			close(c.synced)
		}
	case mesh.MessageReceived:
		if e.Type == protocol.TypeBroadcast {
			c.broadcasts++
			if c.broadcasts == c.wantBcasts {
				close(c.allBcasts)
			}
		}
	}
}

func (c *eventCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all
}

// pausableWriter keeps what is written; while paused, Write blocks, like
// a pipe whose reader has stopped reading.
type pausableWriter struct {
	gate sync.Mutex // held while paused
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *pausableWriter) Write(p []byte) (int, error) {
	w.waitUnpaused()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// waitUnpaused returns once the writer is not paused (gate not held).
func (w *pausableWriter) waitUnpaused() {
	w.gate.Lock()
	defer w.gate.Unlock()
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A burst of broadcasts larger than the event buffer, written to an output
// that stops reading: every event the node emitted is either printed or
// counted in a "dropped" line, and the final "stopped" line has the total.
func TestRunAccountsForEveryEventOfABurst(t *testing.T) {
	const burst = 3000 // three times tcp.DefaultEventBuffer
	ctx := context.Background()
	recvCount := newEventCounter(burst)
	recv, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1}, Listen: "127.0.0.1:0", Plugins: []mesh.Plugin{recvCount}})
	if err != nil {
		t.Fatal(err)
	}
	sendCount := newEventCounter(0)
	sender, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 2}, Connect: []string{recv.Addr().String()},
		Plugins: []mesh.Plugin{sendCount}, Backoff: tcp.Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	senderCtx, stopSender := context.WithCancel(ctx)
	senderDone := make(chan error, 1)
	go func() { senderDone <- sender.Run(senderCtx) }()
	go func() {
		for range sender.Events() {
		}
	}()
	defer func() {
		stopSender()
		<-senderDone
	}()

	out := &pausableWriter{}
	inR, inW := io.Pipe()
	defer inW.Close()
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- Run(runCtx, recv, inR, out) }()

	waitClosed(t, recvCount.synced, "the receiver's first node sync")
	waitClosed(t, sendCount.synced, "the sender's first node sync")
	out.gate.Lock() // the reader of stdout stops reading
	for i := range burst {
		if err := sender.SendBroadcast(ctx, fmt.Sprintf("burst %d", i), false); err != nil {
			t.Fatal(err)
		}
	}
	waitClosed(t, recvCount.allBcasts, "the receiver's node to receive the whole burst")
	out.gate.Unlock()
	stopRun()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}

	var printed, broadcasts, droppedSum, droppedLines int
	var stopped map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		if stopped != nil {
			t.Fatalf("line after the stopped line: %s", sc.Text())
		}
		switch m["event"] {
		case "listening", "nodes":
		case "dropped":
			droppedLines++
			n, _ := m["count"].(float64)
			if n <= 0 {
				t.Fatalf("dropped line with count %v: %s", m["count"], sc.Text())
			}
			droppedSum += int(n)
			if m["total"] != float64(droppedSum) {
				t.Fatalf("dropped line total %v, want the running sum %d: %s", m["total"], droppedSum, sc.Text())
			}
		case "stopped":
			stopped = m
		default:
			printed++
			if m["event"] == "receive" && m["type"] == "broadcast" {
				broadcasts++
			}
		}
	}
	emitted := recvCount.total()
	t.Logf("burst %d: node emitted %d events, printed %d (%d broadcasts), dropped %d in %d reports",
		burst, emitted, printed, broadcasts, droppedSum, droppedLines)
	if stopped == nil {
		t.Fatal("no stopped line at the end")
	}
	if stopped["events_dropped"] != float64(droppedSum) {
		t.Fatalf("stopped line says %v events dropped, the dropped lines add up to %d", stopped["events_dropped"], droppedSum)
	}
	if printed+droppedSum != emitted {
		t.Fatalf("printed %d + dropped %d = %d events, the node emitted %d", printed, droppedSum, printed+droppedSum, emitted)
	}
	if droppedSum == 0 || broadcasts == 0 {
		t.Fatalf("expected some broadcasts printed and some dropped with a stalled output, got %d printed, %d dropped", broadcasts, droppedSum)
	}
}

// The console says where it listens before anything else, and prints the
// node list whenever it changes.
func TestRunReportsListeningAndNodeListChanges(t *testing.T) {
	ctx := context.Background()
	d, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	inW, out, runDone := runConsole(t, ctx, d)

	select {
	case m := <-out.ch:
		if m["event"] != "listening" || m["addr"] != d.Addr().String() || m["node"] != 1.0 {
			t.Fatalf("first line %v, want listening on %s", m, d.Addr())
		}
	case <-time.After(waitTimeout):
		t.Fatal("no first line")
	}

	peer, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 2}, Connect: []string{d.Addr().String()},
		Backoff: tcp.Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	peerCtx, stopPeer := context.WithCancel(ctx)
	peerDone := make(chan error, 1)
	go func() { peerDone <- peer.Run(peerCtx) }()
	go func() {
		for range peer.Events() {
		}
	}()

	m := out.next("node list with node 2", func(m map[string]any) bool { return m["event"] == "nodes" })
	if fmt.Sprint(m["nodes"], m["added"], m["removed"]) != "[2] [2] []" || m["self"] != 1.0 {
		t.Fatalf("nodes line %v, want self 1, nodes [2], added [2], removed []", m)
	}
	stopPeer()
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
	m = out.next("node list without node 2", func(m map[string]any) bool { return m["event"] == "nodes" })
	if fmt.Sprint(m["nodes"], m["added"], m["removed"]) != "[] [] [2]" {
		t.Fatalf("nodes line %v, want nodes [], added [], removed [2]", m)
	}

	inW.Close()
	m = out.next("stopped", event("stopped"))
	if m["events_dropped"] != 0.0 {
		t.Fatalf("stopped line %v, want events_dropped 0", m)
	}
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
}
