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

// While held, virtual time stands still over wall time that passes, and
// moves only when a request runs the network; released, it follows the
// wall clock again.
func TestRealtimeHold(t *testing.T) {
	net := New(Config{Seed: 3, Model: Ideal()})
	rt := NewRealtime(net, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go rt.Run(ctx)
	now := func() time.Time {
		var at time.Time
		if err := rt.Do(ctx, func(n *Network) { at = n.Now() }); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if err := rt.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	held := now()
	<-time.After(20 * RealtimeStep) // the subject: wall time passing, not synchronisation
	if at := now(); !at.Equal(held) {
		t.Fatalf("held, virtual time moved from %v to %v", held, at)
	}
	rt.Do(ctx, func(n *Network) { n.Run(n.Now().Add(time.Second)) })
	if at := now(); !at.Equal(held.Add(time.Second)) {
		t.Fatalf("a held step of 1 s took virtual time from %v to %v", held, at)
	}
	if err := rt.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for now().Equal(held.Add(time.Second)) {
		select {
		case <-ctx.Done():
			t.Fatal("released, virtual time did not move")
		case <-time.After(RealtimeStep):
		}
	}
}
