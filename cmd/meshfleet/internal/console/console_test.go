package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

const waitTimeout = 15 * time.Second

func TestEventLineFields(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	cases := []struct {
		ev   mesh.Event
		want map[string]any
	}{
		{mesh.MessageReceived{Type: protocol.TypeBroadcast, From: 3907768579, Msg: `hi "you" <&>`},
			map[string]any{"event": "receive", "type": "broadcast", "from": 3907768579.0, "msg": `hi "you" <&>`}},
		{mesh.MessageReceived{Type: protocol.TypeSingle, From: 7, Msg: ""},
			map[string]any{"event": "receive", "type": "single", "from": 7.0, "msg": ""}},
		{mesh.NewConnection{Conn: 4, NodeID: 9},
			map[string]any{"event": "new_connection", "conn": 4.0, "node": 9.0}},
		{mesh.ChangedConnections{NodeID: 9},
			map[string]any{"event": "changed_connections", "node": 9.0}},
		{mesh.DroppedConnection{Conn: 4, NodeID: 0, Reason: "timeout"},
			map[string]any{"event": "dropped_connection", "conn": 4.0, "node": 0.0, "reason": "timeout"}},
		{mesh.TimeAdjusted{NodeID: 9, Offset: -1500},
			map[string]any{"event": "time_adjusted", "node": 9.0, "offset_us": -1500.0}},
		{mesh.DelayMeasured{NodeID: 9, Delay: 2490},
			map[string]any{"event": "delay", "node": 9.0, "delay_us": 2490.0}},
		{mesh.PackageReceived{Conn: 2, Header: protocol.Header{Type: 200, Routing: protocol.RouteBroadcast, From: 5}, JSON: []byte(`{"type":200,"from":5}`)},
			map[string]any{"event": "package", "conn": 2.0, "type": 200.0, "routing": "broadcast", "from": 5.0, "dest": 0.0,
				"json": map[string]any{"type": 200.0, "from": 5.0}}},
		{mesh.PackageReceived{Conn: 2, JSON: []byte("not json")},
			map[string]any{"event": "package", "conn": 2.0, "type": 0.0, "routing": "neighbour", "from": 0.0, "dest": 0.0, "json": "not json"}},
	}
	for _, c := range cases {
		line := EventLine(at, c.ev)
		if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
			t.Errorf("%T: not one line: %q", c.ev, line)
		}
		if !strings.HasPrefix(string(line), `{"t":"2026-11-22T10:00:00.123456789Z","event":`) {
			t.Errorf("%T: line does not start with t and event: %s", c.ev, line)
		}
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%T: invalid JSON %q: %v", c.ev, line, err)
		}
		c.want["t"] = "2026-11-22T10:00:00.123456789Z"
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%T:\n got %v\nwant %v", c.ev, got, c.want)
		}
	}
}

type pluginEvent struct {
	mesh.EventBase
	Progress int `json:"progress"`
}

func TestEventLineOtherEvents(t *testing.T) {
	line := EventLine(time.Unix(0, 0).UTC(), pluginEvent{Progress: 42})
	var got struct {
		Event  string `json:"event"`
		GoType string `json:"go_type"`
		Data   struct {
			Progress int `json:"progress"`
		} `json:"data"`
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	if got.Event != "plugin" || got.GoType != "console.pluginEvent" || got.Data.Progress != 42 {
		t.Fatalf("plugin event line = %s", line)
	}
}

// lines collects the JSON lines a console writes.
type lines struct {
	t  *testing.T
	ch chan map[string]any
}

// runConsole runs Run on d with a pipe for its commands (inW; closing it
// stops Run) and its output read as JSON lines; runDone has Run's result.
func runConsole(t *testing.T, ctx context.Context, d *tcp.Driver) (inW *io.PipeWriter, out *lines, runDone chan error) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	out = readJSONLines(t, outR)
	runDone = make(chan error, 1)
	go func() {
		runDone <- Run(ctx, d, inR, outW)
		outW.Close()
	}()
	return inW, out, runDone
}

func readJSONLines(t *testing.T, r io.Reader) *lines {
	l := &lines{t: t, ch: make(chan map[string]any, 1024)}
	go func() {
		defer close(l.ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "INVALID", "line": sc.Text()}
			}
			l.ch <- m
		}
	}()
	return l
}

// next returns the first line (skipping others) for which match holds.
func (l *lines) next(what string, match func(map[string]any) bool) map[string]any {
	l.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case m, ok := <-l.ch:
			if !ok {
				l.t.Fatalf("output ended while waiting for %s", what)
			}
			if m["event"] == "INVALID" {
				l.t.Fatalf("output line is not JSON: %q", m["line"])
			}
			if match(m) {
				return m
			}
		case <-deadline:
			l.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func event(name string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["event"] == name }
}

func TestRunCommandsAndEvents(t *testing.T) {
	ctx := context.Background()
	peer, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 2}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	peerCtx, stopPeer := context.WithCancel(ctx)
	peerDone := make(chan error, 1)
	go func() { peerDone <- peer.Run(peerCtx) }()
	peerMsgs := make(chan mesh.MessageReceived, 16)
	go func() {
		for ev := range peer.Events() {
			if m, ok := ev.(mesh.MessageReceived); ok {
				peerMsgs <- m
			}
		}
	}()
	defer func() {
		stopPeer()
		if err := <-peerDone; err != nil {
			t.Error(err)
		}
	}()

	d, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1}, Connect: []string{peer.Addr().String()},
		Backoff: tcp.Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	inW, out, runDone := runConsole(t, ctx, d)
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(inW, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}

	out.next("new_connection to node 2", func(m map[string]any) bool {
		return m["event"] == "new_connection" && m["node"] == 2.0
	})

	send("nodes")
	if m := out.next("nodes answer", event("nodes")); fmt.Sprint(m["nodes"]) != "[2]" || m["self"] != 1.0 {
		t.Fatalf("nodes answer = %v, want self 1 and nodes [2]", m)
	}
	send("tree")
	if m := out.next("tree answer", event("tree")); fmt.Sprint(m["tree"]) != "map[nodeId:1 subs:[map[nodeId:2]]]" {
		t.Fatalf("tree answer = %v", m["tree"])
	}

	send("broadcast  hello  mesh ")
	if m := out.next("broadcast sent", event("sent")); m["links"] != 1.0 {
		t.Errorf("broadcast sent on %v links, want 1", m["links"])
	}
	waitPeer := func(typ int, msg string) {
		t.Helper()
		select {
		case m := <-peerMsgs:
			if m.Type != typ || m.From != 1 || m.Msg != msg {
				t.Fatalf("peer received %+v, want type %d from 1 %q", m, typ, msg)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("peer did not receive %q", msg)
		}
	}
	// Leading spaces after the verb are separators; the rest is the text.
	waitPeer(protocol.TypeBroadcast, "hello  mesh")

	send("single 2 just for you")
	out.next("single sent", event("sent"))
	waitPeer(protocol.TypeSingle, "just for you")

	if err := peer.SendSingle(ctx, 1, "back at you"); err != nil {
		t.Fatal(err)
	}
	out.next("receive line", func(m map[string]any) bool {
		return m["event"] == "receive" && m["type"] == "single" && m["from"] == 2.0 && m["msg"] == "back at you"
	})

	send("delay 2")
	out.next("delay requested", event("delay_requested"))
	out.next("delay measured", func(m map[string]any) bool { return m["event"] == "delay" && m["node"] == 2.0 })

	for _, bad := range []struct{ line, want string }{
		{"frobnicate", `unknown command "frobnicate"`},
		{"single x hi", "usage: single ID TEXT"},
		{"single 2", "usage: single ID TEXT"},
		{"single 4294967296 hi", "usage: single ID TEXT"},
		{"broadcast", "usage: broadcast TEXT"},
		{"delay", "usage: delay ID"},
		{"nodes please", "usage: nodes"},
		{"single 77 nobody there", "not reachable"},
		{"delay 77", "not reachable"},
	} {
		send(bad.line)
		m := out.next("error for "+bad.line, event("error"))
		if msg, _ := m["error"].(string); !strings.Contains(msg, bad.want) {
			t.Errorf("%q: error %q does not mention %q", bad.line, msg, bad.want)
		}
	}

	inW.Close() // EOF ends the node
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run after EOF: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after EOF")
	}
}

func TestRunEndsWithContext(t *testing.T) {
	d, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe() // never written: Run must not wait for input
	defer inW.Close()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, d, inR, io.Discard) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestReadLineRejectsOverlongLines(t *testing.T) {
	in := strings.NewReader("nodes\n" + strings.Repeat("x", MaxLineLength+10) + "\ntree\r\nlast")
	ch := make(chan string, 8)
	var bad []error
	readLines(context.Background(), in, ch, func(err error) { bad = append(bad, err) })
	var got []string
	for l := range ch {
		got = append(got, l)
	}
	if fmt.Sprint(got) != "[nodes tree last]" {
		t.Fatalf("lines = %q, want nodes, tree, last", got)
	}
	if len(bad) != 1 || !errors.Is(bad[0], ErrBadCommand) {
		t.Fatalf("overlong line errors = %v, want one ErrBadCommand", bad)
	}
}

// A broadcast made before the node has any link is not reported as sent.
func TestBroadcastWithoutLinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 1}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	inW, out, runDone := runConsole(t, ctx, d)
	if _, err := io.WriteString(inW, "broadcast anyone there?\n"); err != nil {
		t.Fatal(err)
	}
	m := out.next("broadcast answer", func(m map[string]any) bool { return m["event"] == "sent" || m["event"] == "error" })
	if msg, _ := m["error"].(string); m["event"] != "error" || !strings.Contains(msg, "no links: not sent") {
		t.Errorf("broadcast without links: %v", m)
	}
	inW.Close()
	if err := <-runDone; err != nil {
		t.Error(err)
	}
}
