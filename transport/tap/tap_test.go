package tap_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshfleet/meshfleet/capture"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tap"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 15 * time.Second

// recorder keeps the tap's records and wakes waiters on each one.
type recorder struct {
	mu      sync.Mutex
	recs    []capture.Record
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) record(rec capture.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) waitFor(t *testing.T, what string, cond func([]capture.Record) bool) []capture.Record {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		recs := slices.Clone(r.recs)
		changed := r.changed
		r.mu.Unlock()
		if cond(recs) {
			return recs
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; records: %+v", what, recs)
		}
	}
}

func closedBoth(recs []capture.Record) bool {
	var c2s, s2c bool
	for _, r := range recs {
		if r.Event == capture.EventClosed {
			c2s = c2s || r.Dir == capture.ClientToServer
			s2c = s2c || r.Dir == capture.ServerToClient
		}
	}
	return c2s && s2c
}

func startTap(t *testing.T, upstream string, rec *recorder) *tap.Proxy {
	t.Helper()
	p, err := tap.New(tap.Config{Listen: "127.0.0.1:0", Upstream: upstream}, rec.record)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(waitTimeout):
			t.Error("tap did not stop")
		}
	})
	return p
}

func startNode(t *testing.T, cfg tcp.Config) (*tcp.Driver, context.CancelFunc) {
	t.Helper()
	cfg.Backoff = tcp.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	d, err := tcp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	go func() {
		for range d.Events() {
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return d, stop
}

// A tap between two real nodes records their node sync; every recorded
// message decodes and re-encodes to the same bytes.
func TestTapRecordsNodeSyncBetweenRealNodes(t *testing.T) {
	rec := newRecorder()
	server, _ := startNode(t, tcp.Config{Node: mesh.Config{ID: 2428398258, Root: true}, Listen: "127.0.0.1:0"})
	p := startTap(t, server.Addr().String(), rec)
	_, stopClient := startNode(t, tcp.Config{Node: mesh.Config{ID: 3907768579}, Connect: []string{p.Addr().String()}})

	isSync := func(dir string, typ int, from uint32) func(capture.Record) bool {
		return func(r capture.Record) bool {
			if r.Dir != dir || r.Msg == "" {
				return false
			}
			h, err := protocol.ParseHeader([]byte(r.Msg))
			return err == nil && h.Type == typ && h.From == from
		}
	}
	rec.waitFor(t, "node sync request and reply", func(recs []capture.Record) bool {
		return slices.ContainsFunc(recs, isSync(capture.ClientToServer, protocol.TypeNodeSyncRequest, 3907768579)) &&
			slices.ContainsFunc(recs, isSync(capture.ServerToClient, protocol.TypeNodeSyncReply, 2428398258))
	})
	stopClient()
	recs := rec.waitFor(t, "both directions closed", closedBoth)

	var last float64
	for _, r := range recs {
		if r.Conn != 1 {
			t.Errorf("record on conn %d, want 1 (one client)", r.Conn)
		}
		if r.T < last {
			t.Errorf("time went backwards: %v after %v", r.T, last)
		}
		last = r.T
	}
	rep := capture.Inspect(recs)
	if rep.Messages == 0 || rep.Decoded != rep.Messages || rep.RoundtripIdentical != rep.Messages || len(rep.Errors) != 0 {
		t.Fatalf("inspect of the tap's capture: %+v", rep)
	}

	// The JSONL the command writes reads back as the same records.
	var buf bytes.Buffer
	w := capture.NewWriter(&buf)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	back, err := capture.ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(recs) {
		t.Fatalf("read back %d records, wrote %d", len(back), len(recs))
	}
	for i := range recs {
		if back[i].Msg != recs[i].Msg || back[i].Dir != recs[i].Dir || back[i].Event != recs[i].Event {
			t.Fatalf("record %d read back as %+v, wrote %+v", i, back[i], recs[i])
		}
	}
}

// The tap forwards bytes unchanged in both directions, whatever they are,
// and records only complete messages.
func TestTapForwardsBytesUnchanged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := newRecorder()
	p := startTap(t, ln.Addr().String(), rec)

	client, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	up := []byte("{\"a\":1}\x00\x00not json\x00\xff\xfe binary \x00tail without nul")
	down := bytes.Repeat([]byte("{\"b\":2}\x00"), 5000) // several reads' worth
	go func() {
		client.Write(up)
		client.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		server.Write(down)
		server.(*net.TCPConn).CloseWrite()
	}()
	server.SetReadDeadline(time.Now().Add(waitTimeout))
	client.SetReadDeadline(time.Now().Add(waitTimeout))
	gotUp, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	gotDown, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotUp, up) {
		t.Fatalf("upstream received %q, client sent %q", gotUp, up)
	}
	if !bytes.Equal(gotDown, down) {
		t.Fatalf("client received %d bytes, upstream sent %d", len(gotDown), len(down))
	}

	recs := rec.waitFor(t, "both directions closed", closedBoth)
	var upMsgs []string
	downMsgs := 0
	for _, r := range recs {
		switch {
		case r.Event != "":
		case r.Dir == capture.ClientToServer:
			upMsgs = append(upMsgs, r.Msg)
		case r.Dir == capture.ServerToClient:
			if r.Msg != `{"b":2}` {
				t.Fatalf("server->client message %q", r.Msg)
			}
			downMsgs++
		}
	}
	if want := []string{`{"a":1}`, "not json", "\xff\xfe binary "}; !slices.Equal(upMsgs, want) {
		t.Fatalf("client->server messages %q, want %q", upMsgs, want)
	}
	if downMsgs != 5000 {
		t.Fatalf("server->client messages = %d, want 5000", downMsgs)
	}
}

func TestTapDropsClientWhenUpstreamIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	rec := newRecorder()
	p := startTap(t, dead, rec)
	client, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(client); err != nil {
		t.Fatalf("client was not closed cleanly: %v", err)
	}
	if s := p.Stats(); s.DialFailures != 1 {
		t.Fatalf("DialFailures = %d, want 1", s.DialFailures)
	}
}
