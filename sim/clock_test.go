package sim

import (
	"errors"
	"testing"
	"time"
)

// A node whose clock jumps sees its timers due within the jump fire at
// once and every later input on its own clock; the other nodes and the
// deadlines beyond the jump keep their place; a restart resets the clock.
func TestJumpClock(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[0], nd[1]); err != nil {
		t.Fatal(err)
	}
	for i := range nd {
		if err := nd[i].Step(func(now time.Time, m Machine) { m.(*fake).deadline = now.Add(5 * time.Second) }); err != nil {
			t.Fatal(err)
		}
	}
	n.RunFor(time.Second)
	if err := n.JumpClock(nd[0], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := nd[0].ClockAhead(); got != 10*time.Second {
		t.Errorf("clock ahead %s, want 10s", got)
	}
	n.RunFor(time.Millisecond)
	if len(fk[0].ticks) != 1 || since(n, fk[0].ticks[0]) != 11*time.Second {
		t.Fatalf("jumped node's ticks %v, want one at once, reading 11s", fk[0].ticks)
	}
	if len(fk[1].ticks) != 0 {
		t.Fatalf("the other node ticked at %v before its deadline", fk[1].ticks)
	}
	n.RunFor(5 * time.Second)
	if len(fk[1].ticks) != 1 || since(n, fk[1].ticks[0]) != 5*time.Second {
		t.Errorf("other node's ticks %v, want one at 5s", fk[1].ticks)
	}

	// A deadline beyond the jump comes at its time on the node's clock.
	if err := nd[0].Step(func(now time.Time, m Machine) { m.(*fake).deadline = now.Add(3 * time.Second) }); err != nil {
		t.Fatal(err)
	}
	before := n.Elapsed()
	n.RunFor(10 * time.Second)
	if len(fk[0].ticks) != 2 || fk[0].ticks[1].Sub(n.at(int64(before))) != 13*time.Second {
		t.Errorf("jumped node's ticks %v, want a second one 3s later on its clock", fk[0].ticks)
	}

	// Messages reach the jumped node on its clock, and leave it on time.
	sendOn(t, nd[1], nd[0], 0, "hello")
	sent := n.Elapsed()
	n.RunFor(time.Second)
	if len(fk[0].got) != 1 || fk[0].got[0].at.Sub(n.at(int64(sent))) != 10*time.Second+time.Millisecond {
		t.Errorf("jumped node received %v, want one 1ms later plus the 10s jump", fk[0].got)
	}
	sendOn(t, nd[0], nd[1], 0, "back")
	sent = n.Elapsed()
	n.RunFor(time.Second)
	if len(fk[1].got) != 1 || fk[1].got[0].at.Sub(n.at(int64(sent))) != time.Millisecond {
		t.Errorf("other node received %v, want one 1ms later", fk[1].got)
	}

	if err := n.JumpClock(nd[0], -time.Second); !errors.Is(err, ErrClockBack) {
		t.Errorf("backward jump: %v, want ErrClockBack", err)
	}
	n.Restart(nd[0])
	if got := nd[0].ClockAhead(); got != 0 {
		t.Errorf("clock ahead %s after a restart, want 0", got)
	}
	fresh := nd[0].Machine().(*fake)
	if err := nd[0].Step(func(now time.Time, m Machine) { m.(*fake).deadline = now.Add(2 * time.Second) }); err != nil {
		t.Fatal(err)
	}
	before = n.Elapsed()
	n.RunFor(5 * time.Second)
	if len(fresh.ticks) != 1 || fresh.ticks[0].Sub(n.at(int64(before))) != 2*time.Second {
		t.Errorf("restarted node's ticks %v, want one 2s later", fresh.ticks)
	}
	n.Crash(nd[0])
	if err := n.JumpClock(nd[0], time.Second); !errors.Is(err, ErrNodeDown) {
		t.Errorf("jump on a node that is down: %v, want ErrNodeDown", err)
	}
}
