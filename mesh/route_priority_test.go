package mesh

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

func TestSendRawPriorityQueuesAtThatPriority(t *testing.T) {
	now := time.Unix(0, 0)
	n := New(Config{ID: 1}, now)
	n.Connect(now, 7, true)
	// Sync the connection so it is routable: the peer's reply names it.
	reply := protocol.NodeSync{NodeTree: protocol.NodeTree{NodeID: 2}, Type: protocol.TypeNodeSyncReply, Dest: 1, From: 2}
	n.Receive(now, 7, reply.AppendJSON(nil))
	n.Ready()
	pkg := []byte(`{"from":1,"dest":2,"routing":1,"type":700,"frame":"AA=="}`)
	if err := n.SendRawPriority(now, pkg, PriorityCritical); err != nil {
		t.Fatal(err)
	}
	if err := n.SendRaw(now, pkg); err != nil {
		t.Fatal(err)
	}
	msgs := n.Ready().Messages
	if len(msgs) != 2 || msgs[0].Priority != PriorityCritical || msgs[1].Priority != PriorityNormal || msgs[0].Conn != 7 {
		t.Fatalf("queued %+v", msgs)
	}
	if err := n.SendRawPriority(now, []byte(`{"type":700,"routing":1,"dest":99}`), PriorityHigh); err == nil {
		t.Fatal("unroutable priority send accepted")
	}
}
