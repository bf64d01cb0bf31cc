package sim

import (
	"context"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

func TestRealtimeDriverDeliversAndAnswers(t *testing.T) {
	net := New(Config{Seed: 3, Model: Ideal()})
	nodes, err := net.AddMeshNodes(5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.Chain(nodes); err != nil {
		t.Fatal(err)
	}
	rt := NewRealtime(net, 200) // 200× real time: the chain converges in a few virtual seconds
	d := rt.NodeDriver(nodes[0].ID(), 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go rt.Run(ctx)
	// Convergence is observed through the driver's own events: wait until
	// the first node reports the whole chain.
	for {
		var known int
		if err := d.Do(ctx, func(_ time.Time, n *mesh.Node) { known = len(n.NodeList(false)) }); err != nil {
			t.Fatal(err)
		}
		if known == 4 {
			break
		}
		select {
		case <-d.Events():
		case <-ctx.Done():
			t.Fatalf("chain did not converge; node 1 knows %d", known)
		}
	}
	last := nodes[4].ID()
	if err := d.Do(ctx, func(now time.Time, n *mesh.Node) { n.SendSingle(now, last, "ping") }); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	rt.Do(ctx, func(net *Network) {
		net.OnEvent(func(n *Node, _ time.Time, ev mesh.Event) {
			if m, ok := ev.(mesh.MessageReceived); ok && n.ID() == last {
				select {
				case got <- m.Msg:
				default:
				}
			}
		})
	})
	// The single may already have arrived before the listener: send another.
	d.Do(ctx, func(now time.Time, n *mesh.Node) { n.SendSingle(now, last, "ping") })
	select {
	case m := <-got:
		if m != "ping" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("single not delivered")
	}
	cancel()
	<-rt.done
	if err := d.Do(context.Background(), func(time.Time, *mesh.Node) {}); err != ErrRealtimeStopped {
		t.Fatalf("Do after stop: %v", err)
	}
}
