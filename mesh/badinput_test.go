package mesh

// docs/protocol.md §1.5: malformed input is dropped; only node-sync validation
// closes a connection. Also the fuzz target and the relay benchmarks.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// relayProbe is a node 1 with synced neighbours 2..n+1 on connections
// 1..n.
func relayProbe(t testing.TB, n int) *probe {
	p := newProbe(t, Config{ID: 1})
	for i := 1; i <= n; i++ {
		id := i + 1
		p.syncWith(ConnID(i), true, fmt.Sprintf(`{"nodeId":%d,"subs":[{"nodeId":%d}],"type":5,"dest":1,"from":%d}`, id, id*100, id))
	}
	p.n.Ready()
	return p
}

func TestBadInput(t *testing.T) {
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepTree := func(levels int) string {
		return `{"nodeId":2,"type":5,"from":2,"subs":[` + strings.Repeat(`{"nodeId":7,"subs":[`, levels) + strings.Repeat(`]}`, levels) + `]}`
	}
	for _, tc := range []struct {
		name, msg string
		// invalid: counted as an invalid package (a parse error, or
		// well-formed JSON that needed coercion, which is still handled).
		invalid bool
	}{
		{"empty", "", true},
		{"garbage", "garbage", true},
		{"binary", "\xff\xfe\x00\x01", true},
		{"truncated", `{"type":8,"dest":0,"from":2,"msg":"he`, true},
		{"trailing", `{"type":8,"dest":0,"from":2,"msg":"x"} {}`, true},
		{"array", `[1,2,3]`, true},
		{"number", `42`, true},
		{"null", `null`, true},
		{"string", `"type"`, true},
		{"too deep", deep, true},
		{"empty object", `{}`, true},
		{"type string", `{"type":"8","dest":0,"from":2,"msg":"x"}`, true},
		{"type float", `{"type":8.5,"dest":0,"from":2,"msg":"x"}`, true},
		{"type huge", `{"type":1e30,"dest":0,"from":2}`, true},
		{"type negative", `{"type":-1}`, true},
		{"control", `{"type":7,"dest":1,"from":2}`, false},
		{"time sync msg string", `{"type":4,"dest":1,"from":2,"msg":"x"}`, true},
		{"time sync no msg", `{"type":4,"dest":1,"from":2}`, true},
		{"time sync unknown kind", `{"type":4,"dest":1,"from":2,"msg":{"type":9}}`, false},
		{"time sync error kind", `{"type":4,"dest":1,"from":2,"msg":{"type":-1}}`, false},
		{"time reply garbage", `{"type":4,"dest":1,"from":2,"msg":{"type":2,"t0":"a","t1":-5,"t2":1e40}}`, true},
		{"delay for us garbage", `{"type":3,"dest":1,"msg":{"type":2}}`, true},
		{"delay kind 0", `{"type":3,"dest":1,"from":2,"msg":{"type":0}}`, false},
		{"single msg number", `{"type":9,"dest":1,"from":2,"msg":123}`, true},
		{"single no dest", `{"type":9,"from":2,"msg":"x"}`, true},
		{"single dest string", `{"type":9,"dest":"1","from":2,"msg":"x"}`, true},
		{"broadcast bare", `{"type":8}`, true},
		{"routing string", `{"type":20,"routing":"2","from":2}`, true},
		{"routing unknown", `{"type":20,"routing":5,"dest":3,"from":2}`, false},
		{"routing negative", `{"type":20,"routing":-7,"dest":3,"from":2}`, false},
		{"bad utf8 in string", "{\"type\":8,\"dest\":0,\"from\":2,\"msg\":\"\xff\xfe\"}", false},
		{"huge string", `{"type":8,"dest":0,"from":2,"msg":"` + strings.Repeat("x", 1<<20) + `"}`, false},
		{"sync subs not objects", `{"nodeId":2,"subs":[1,"x",null,[]],"type":5,"dest":1,"from":2}`, true},
		{"sync subs string", `{"nodeId":2,"subs":"x","type":6,"dest":1,"from":2}`, true},
		{"sync nodeId string", `{"nodeId":"2","from":2,"type":5}`, true},
		{"sync deep", deepTree(100), false},
		{"sync beyond nesting limit", deepTree(200), true}, // §1.3: 255
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := relayProbe(t, 2)
			before := p.n.Stats()
			rd := p.recv(1, tc.msg)
			rd = merge(rd, p.advance(time.Second))
			if len(rd.Close) != 0 {
				t.Errorf("closed %v", rd.Close)
			}
			if len(p.n.Connections()) != 2 || !p.n.IsConnected(2) {
				t.Errorf("connections %+v", p.n.Connections())
			}
			after := p.n.Stats()
			if gotErr := after.ParseErrors > before.ParseErrors; gotErr != tc.invalid {
				t.Errorf("parse errors %d → %d", before.ParseErrors, after.ParseErrors)
			}
			for _, o := range rd.Messages {
				if _, err := protocol.ParseHeader(o.Data); err != nil {
					t.Errorf("sent unparsable %q: %v", o.Data, err)
				}
			}
		})
	}
}

// Bad input to the driver-facing API never panics either.
func TestBadCalls(t *testing.T) {
	p := relayProbe(t, 1)
	p.n.Receive(p.now, 99, []byte(`{"type":8,"dest":0,"from":2,"msg":"x"}`)) // unknown connection
	p.n.Disconnect(p.now, 99)
	p.n.Receive(p.now, 1, nil)
	p.n.Tick(p.now.Add(-time.Hour)) // time going backwards
	p.n.Connect(p.now, 1, false)    // reused id: the old link is dropped first
	rd := p.n.Ready()
	if d := eventsOf[DroppedConnection](&testNet{events: map[uint32][]Event{1: rd.Events}}, 1); len(d) != 1 || d[0].Reason != "replaced" {
		t.Errorf("reused ConnID: events %v", rd.Events)
	}
	if err := p.n.SendRaw(p.now, nil); err == nil {
		t.Error("SendRaw(nil) succeeded")
	}
	if err := p.n.SendPackage(p.now, nil); !errors.Is(err, ErrNotRoutable) {
		t.Errorf("SendPackage(nil) = %v", err)
	}
	if s := p.n.Stats(); s.MessagesDropped < 1 {
		t.Errorf("stats %+v", s)
	}
}

// FuzzNodeReceive feeds arbitrary messages to a node with two synced
// neighbours: it must never panic, may close a connection only for a
// node-sync package, and must only ever send parsable packages.
func FuzzNodeReceive(f *testing.F) {
	for _, s := range []string{
		`{"nodeId":2,"subs":[{"nodeId":200}],"type":5,"dest":1,"from":2}`,
		`{"nodeId":2,"subs":[{"nodeId":1}],"type":6,"dest":1,"from":2}`,
		`{"type":4,"dest":1,"from":2,"msg":{"type":0}}`,
		`{"type":4,"dest":1,"from":2,"msg":{"type":1,"t0":4294967295}}`,
		`{"type":4,"dest":1,"from":2,"msg":{"type":2,"t0":1,"t1":2,"t2":3}}`,
		`{"type":3,"dest":300,"from":2,"msg":{"type":1,"t0":5}}`,
		`{"type":3,"dest":1,"from":2,"msg":{"type":1,"t0":5}}`,
		`{"type":9,"dest":300,"from":2,"msg":"x"}`,
		`{"type":8,"dest":0,"from":2,"msg":"x"}`,
		`{"from":2,"routing":2,"type":21,"x":1}`,
		`{"from":2,"dest":1,"routing":1,"type":20,"sensor":0.5}`,
		`[`, `{}`, `{"type":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		p := relayProbe(t, 2)
		rd := p.recv(1, string(msg))
		rd = merge(rd, p.advance(11*time.Second))
		if len(rd.Close) > 0 {
			if h, err := protocol.ParseHeader(msg); err != nil || (h.Type != protocol.TypeNodeSyncRequest && h.Type != protocol.TypeNodeSyncReply) {
				t.Fatalf("closed %v for a non-node-sync message", rd.Close)
			}
		}
		for _, o := range rd.Messages {
			if _, err := protocol.ParseHeader(o.Data); err != nil {
				t.Fatalf("sent unparsable %q: %v", o.Data, err)
			}
		}
		if l := p.n.NodeList(true); !slices.IsSorted(l) {
			t.Fatalf("NodeList not sorted: %v", l)
		}
	})
}

// BenchmarkBroadcastRelay: a node forwarding a broadcast from one
// neighbour to its three others (and handling it).
func BenchmarkBroadcastRelay(b *testing.B) {
	p := relayProbe(b, 4)
	msg := []byte(`{"type":8,"dest":0,"from":2,"msg":"{\"id\":42,\"temp\":21.5,\"hum\":40}"}`)
	now := p.now
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		p.n.Receive(now, 1, msg)
		if rd := p.n.Ready(); len(rd.Messages) != 3 {
			b.Fatalf("forwarded %d", len(rd.Messages))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSingleRelay: a node forwarding a SINGLE towards its destination.
func BenchmarkSingleRelay(b *testing.B) {
	p := relayProbe(b, 4)
	msg := []byte(`{"type":9,"dest":500,"from":2,"msg":"{\"id\":42,\"temp\":21.5,\"hum\":40}"}`)
	now := p.now
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		p.n.Receive(now, 1, msg)
		if rd := p.n.Ready(); len(rd.Messages) != 1 {
			b.Fatalf("forwarded %d", len(rd.Messages))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
