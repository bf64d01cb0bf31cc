package sim

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

func pad(prefix string, size int) string {
	// size is the wire size: the JSON text plus the NUL terminator.
	return prefix + strings.Repeat(".", size-1-len(prefix))
}

func since(n *Network, t time.Time) time.Duration { return t.Sub(n.epoch) }

func TestLatencyArithmetic(t *testing.T) {
	m := Model{
		Radio: Radio{TxOverhead: time.Millisecond, ByteTime: 10 * time.Microsecond},
		Link:  Link{Latency: 2 * time.Millisecond},
	}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, pad("a", 100), pad("b", 100))
	n.RunFor(time.Second)
	got := fk[0].got
	if len(got) != 2 {
		t.Fatalf("received %d messages, want 2", len(got))
	}
	// 1 ms overhead + 100 B × 10 µs + 2 ms latency.
	if d := since(n, got[0].at); d != 4*time.Millisecond {
		t.Errorf("first message after %v, want 4ms", d)
	}
	// The second waits for the first's airtime (2 ms) on the radio.
	if d := since(n, got[1].at); d != 6*time.Millisecond {
		t.Errorf("second message after %v, want 6ms", d)
	}
	if got := m.OneHop(100); got != 4*time.Millisecond {
		t.Errorf("OneHop(100) = %v, want 4ms", got)
	}
	if fk[1].connects[0].station != true || fk[0].connects[0].station != false {
		t.Errorf("station flags: dialer %v, acceptor %v", fk[1].connects[0].station, fk[0].connects[0].station)
	}
}

// The ESP8266 preset must reproduce the measured one-hop figures it was
// fitted to: 2.1 ms + 7.6 µs/byte, and 28 messages/s of 4,400 bytes.
func TestESP8266MatchesMeasurement(t *testing.T) {
	m := ESP8266()
	for _, size := range []int{50, 500, 4400} {
		mean := m.OneHop(size) + m.Link.Jitter/2
		want := 2100*time.Microsecond + time.Duration(size)*7600*time.Nanosecond
		if mean != want {
			t.Errorf("mean one hop for %d B = %v, want %v", size, mean, want)
		}
	}
	if d := m.OneHop(50) + m.Link.Jitter/2; d < 2400*time.Microsecond || d > 2600*time.Microsecond {
		t.Errorf("small message one hop %v, measured 2.49 ms", d)
	}

	m.Radio.QueueBytes = 0 // the test floods the queue on purpose
	n, nd, fk := fakeNet(t, Config{Model: m, Seed: 1}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	const count = 200
	msgs := make([]string, count)
	for i := range msgs {
		msgs[i] = pad(fmt.Sprint(i), 4400)
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(time.Minute)
	got := fk[0].got
	if len(got) != count {
		t.Fatalf("received %d, want %d", len(got), count)
	}
	rate := float64(count-1) / got[count-1].at.Sub(got[0].at).Seconds()
	if math.Abs(rate-28)/28 > 0.05 {
		t.Errorf("throughput %.1f messages/s of 4,400 B, measured 28", rate)
	}
}

// A node's links share one radio: a hub sending to two children takes the
// sum of both transmissions, not the maximum.
func TestRadioSharedAcrossLinks(t *testing.T) {
	m := Model{Radio: Radio{ByteTime: 10 * time.Microsecond}, Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 3)
	hub, b, c := nd[0], nd[1], nd[2]
	if err := n.Star(nd); err != nil {
		t.Fatal(err)
	}
	var toB, toC []string
	for i := range 10 {
		toB = append(toB, pad(fmt.Sprint("b", i), 1000))
		toC = append(toC, pad(fmt.Sprint("c", i), 1000))
	}
	sendOn(t, hub, b, mesh.PriorityNormal, toB...)
	sendOn(t, hub, c, mesh.PriorityNormal, toC...)
	n.RunFor(time.Second)
	// Each message is 10 ms of airtime. B's ten go first (FIFO).
	if d := since(n, fk[1].got[9].at); d != 101*time.Millisecond {
		t.Errorf("last message to b after %v, want 101ms", d)
	}
	if d := since(n, fk[2].got[0].at); d != 111*time.Millisecond {
		t.Errorf("first message to c after %v, want 111ms (after b's ten)", d)
	}
	if d := since(n, fk[2].got[9].at); d != 201*time.Millisecond {
		t.Errorf("last message to c after %v, want 201ms", d)
	}
	st := n.Stats()
	if st.Messages != 20 || st.Bytes != 20*1000 || st.Delivered != 20 {
		t.Errorf("stats %+v, want 20 messages, 20000 bytes, 20 delivered", st)
	}
	// Both directions of both links, sorted by (From, To): hub→b, hub→c, b→hub, c→hub.
	if len(st.Links) != 4 || st.Links[0].Messages != 10 || st.Links[1].Messages != 10 ||
		st.Links[2].Messages != 0 || st.Links[0].To != b.ID() || st.Links[1].To != c.ID() {
		t.Errorf("per-link stats %+v, want 10 messages on each hub link", st.Links)
	}
}

// Higher priority goes first, but never interrupts the message on air.
func TestPriorityOrder(t *testing.T) {
	m := Model{Radio: Radio{ByteTime: 10 * time.Microsecond}, Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityLow, pad("L1", 1000), pad("L2", 1000), pad("L3", 1000))
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, pad("N1", 1000))
	n.RunFor(5 * time.Millisecond) // L1 is half way through its 10 ms
	sendOn(t, nd[1], nd[0], mesh.PriorityHigh, pad("H1", 1000))
	sendOn(t, nd[1], nd[0], mesh.PriorityCritical, pad("C1", 1000))
	sendOn(t, nd[1], nd[0], mesh.PriorityHigh, pad("H2", 1000))
	n.RunFor(time.Second)
	var order []string
	for _, r := range fk[0].got {
		order = append(order, r.msg[:2])
	}
	want := "L1 C1 H1 H2 N1 L2 L3"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("delivery order %s, want %s", got, want)
	}
}

func TestQueueFullDrops(t *testing.T) {
	m := Model{Radio: Radio{ByteTime: time.Microsecond, QueueBytes: 1000}, Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for i := range 20 {
		msgs = append(msgs, pad(fmt.Sprint(i), 101))
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(time.Second)
	// 1000 bytes hold 9 messages of 101 (the one on air included).
	if len(fk[0].got) != 9 {
		t.Errorf("delivered %d, want 9", len(fk[0].got))
	}
	if st := n.Stats(); st.QueueDrops != 11 {
		t.Errorf("queue drops %d, want 11", st.QueueDrops)
	}
	if st := nd[1].Stats(); st.QueueDrops != 11 || st.MaxQueueBytes != 909 {
		t.Errorf("node stats %+v, want 11 drops, high water 909", st)
	}
	// Once drained, the queue accepts again.
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs[:5]...)
	n.RunFor(time.Second)
	if len(fk[0].got) != 14 {
		t.Errorf("delivered %d after draining, want 14", len(fk[0].got))
	}
}

func TestLossRate(t *testing.T) {
	const p, count = 0.2, 20000
	m := Model{Link: Link{Latency: time.Millisecond, Loss: p}}
	n, nd, fk := fakeNet(t, Config{Model: m, Seed: 7}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	msgs := make([]string, count)
	for i := range msgs {
		msgs[i] = fmt.Sprint(i)
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(time.Second)
	st := n.Stats()
	if int(st.Lost)+len(fk[0].got) != count || st.Messages != count {
		t.Fatalf("lost %d + delivered %d, transmitted %d; want %d each", st.Lost, len(fk[0].got), st.Messages, count)
	}
	// Four standard deviations of a binomial proportion.
	tol := 4 * math.Sqrt(p*(1-p)/count)
	if got := float64(st.Lost) / count; math.Abs(got-p) > tol {
		t.Errorf("loss rate %.4f, want %.2f ± %.4f", got, p, tol)
	}
}

// The receive budget limits fan-in but never slows a single sender that is
// no faster than it.
func TestReceiveBudget(t *testing.T) {
	m := Model{
		Radio: Radio{ByteTime: 10 * time.Microsecond, RxByteTime: 10 * time.Microsecond},
		Link:  Link{Latency: time.Millisecond},
	}
	n, nd, fk := fakeNet(t, Config{Model: m}, 3)
	if err := n.Star(nd); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for i := range 10 {
		msgs = append(msgs, pad(fmt.Sprint(i), 1000))
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(time.Second)
	if d := since(n, fk[0].got[9].at); d != 101*time.Millisecond {
		t.Errorf("single sender: last message after %v, want 101ms (tx-bound)", d)
	}
	start := n.Now()
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	sendOn(t, nd[2], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(time.Second)
	if len(fk[0].got) != 30 {
		t.Fatalf("received %d, want 30", len(fk[0].got))
	}
	// Two senders at full rate: 20 messages × 10 ms through one receiver.
	if d := fk[0].got[29].at.Sub(start); d != 201*time.Millisecond {
		t.Errorf("fan-in: last message after %v, want 201ms (rx-bound)", d)
	}
}

// Jitter never reorders a connection (TCP).
func TestJitterKeepsOrder(t *testing.T) {
	m := Model{Radio: Radio{ByteTime: 10 * time.Microsecond}, Link: Link{Latency: time.Millisecond, Jitter: 50 * time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m, Seed: 3}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for i := range 500 {
		msgs = append(msgs, fmt.Sprintf("%04d", i))
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, msgs...)
	n.RunFor(10 * time.Second)
	if len(fk[0].got) != 500 {
		t.Fatalf("received %d, want 500", len(fk[0].got))
	}
	var minGap, maxGap time.Duration = time.Hour, 0
	for i, r := range fk[0].got {
		if r.msg != msgs[i] {
			t.Fatalf("message %d is %q, want %q", i, r.msg, msgs[i])
		}
		if i > 0 {
			g := r.at.Sub(fk[0].got[i-1].at)
			minGap, maxGap = min(minGap, g), max(maxGap, g)
		}
	}
	if maxGap <= 5*time.Millisecond {
		t.Errorf("gaps between %v and %v: jitter had no effect", minGap, maxGap)
	}
}

// A machine closing a connection: the peer still gets what was sent before,
// then Disconnect; what the peer had in flight is discarded.
func TestCloseAfterData(t *testing.T) {
	m := Model{Radio: Radio{ByteTime: 10 * time.Microsecond}, Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	fk[1].onRecv = func(f *fake, now time.Time, c mesh.ConnID, msg []byte) {
		if len(f.drops) != 0 {
			t.Errorf("message %q after Disconnect", msg)
		}
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, pad("late", 1000)) // 11 ms to reach node 1
	c := connTo(t, nd[0], nd[1])
	if err := nd[0].Step(func(now time.Time, mc Machine) {
		f := mc.(*fake)
		f.send(c, pad("bye", 500), mesh.PriorityNormal)
		f.close(c)
	}); err != nil {
		t.Fatal(err)
	}
	n.RunFor(time.Second)
	if len(fk[1].got) != 0 {
		t.Errorf("closing node's queued message was sent: %v", fk[1].got)
	}
	if len(fk[0].got) != 0 {
		t.Errorf("closed node received %d messages after closing", len(fk[0].got))
	}
	if len(fk[1].drops) != 1 || fk[1].drops[0] != c {
		t.Errorf("peer drops %v, want [%d]", fk[1].drops, c)
	}
	if len(fk[0].drops) != 0 {
		t.Errorf("closing node told of its own close: %v", fk[0].drops)
	}
	if st := n.Stats(); st.ClosedDrops != 2 {
		t.Errorf("closed drops %d, want 2", st.ClosedDrops)
	}

	// Data already on its way is delivered before the FIN.
	n2, nd2, fk2 := fakeNet(t, Config{Model: m}, 2)
	if err := n2.Connect(nd2[1], nd2[0]); err != nil {
		t.Fatal(err)
	}
	sendOn(t, nd2[0], nd2[1], mesh.PriorityNormal, pad("first", 1000))
	n2.RunFor(10 * time.Millisecond) // transmitted, still in flight (latency 1 ms)
	c2 := connTo(t, nd2[0], nd2[1])
	if err := nd2[0].Step(func(now time.Time, mc Machine) { mc.(*fake).close(c2) }); err != nil {
		t.Fatal(err)
	}
	n2.RunFor(time.Second)
	if len(fk2[1].got) != 1 || len(fk2[1].drops) != 1 {
		t.Errorf("peer got %d messages and %d drops, want 1 and 1", len(fk2[1].got), len(fk2[1].drops))
	}
	fk2[1].onRecv = nil
}

func TestCrashRestart(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m, Redial: 2 * time.Second}, 3)
	if err := n.Chain(nd); err != nil { // 1 → 0, 2 → 1
		t.Fatal(err)
	}
	mid := nd[1]
	mid.Storage().Put("fw", []byte("v2"))
	n.RunFor(time.Second)
	n.Crash(mid)
	if mid.Up() || mid.Machine() != nil {
		t.Fatal("crashed node still up")
	}
	n.RunFor(time.Millisecond)
	if len(fk[0].drops) != 1 || len(fk[2].drops) != 1 {
		t.Fatalf("peers' drops %v %v, want one each", fk[0].drops, fk[2].drops)
	}
	// Nothing dials while the node is down.
	n.RunFor(time.Minute)
	if len(fk[0].connects) != 1 || len(fk[2].connects) != 1 {
		t.Fatalf("connects while down: %d %d", len(fk[0].connects), len(fk[2].connects))
	}
	n.Restart(mid)
	restartedAt := n.Now()
	newFake := mid.Machine().(*fake)
	if newFake == fk[1] {
		t.Fatal("restart kept the old machine")
	}
	if v, ok := mid.Storage().Get("fw"); !ok || string(v) != "v2" {
		t.Errorf("storage after restart: %q %v", v, ok)
	}
	n.RunFor(time.Minute)
	if len(newFake.connects) != 2 {
		t.Fatalf("restarted node has %d connections, want 2", len(newFake.connects))
	}
	for _, c := range newFake.connects {
		if d := c.at.Sub(restartedAt); d != 2*time.Second {
			t.Errorf("reconnected after %v, want the 2s redial", d)
		}
	}
	// Node 1 is the station towards 0 and the AP for 2.
	if !newFake.connects[0].station && !newFake.connects[1].station {
		t.Error("restarted node dialled no uplink")
	}
	if mid.Restarts() != 1 {
		t.Errorf("restarts %d", mid.Restarts())
	}
}

func TestCrashSilent(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	n.CrashSilent(nd[1])
	sendOn(t, nd[0], nd[1], mesh.PriorityNormal, "anyone?")
	n.RunFor(time.Minute)
	if len(fk[0].drops) != 0 {
		t.Errorf("peer told of a silent crash: %v", fk[0].drops)
	}
	if st := n.Stats(); st.Messages != 1 || st.Delivered != 0 || st.ClosedDrops != 1 {
		t.Errorf("stats %+v: the message should be transmitted and vanish", st)
	}
	// The peer finds out itself and closes; then nothing is left open.
	c := connTo(t, nd[0], nd[1])
	if err := nd[0].Step(func(now time.Time, mc Machine) { mc.(*fake).close(c) }); err != nil {
		t.Fatal(err)
	}
	if len(nd[0].Neighbours()) != 0 {
		t.Error("connection still open after close")
	}
}

func TestPartitionHeal(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m, Redial: time.Second}, 4)
	if err := n.Chain(nd); err != nil {
		t.Fatal(err)
	}
	n.RunFor(time.Second)
	n.Partition(nd[:2], nd[2:])
	if len(fk[1].drops) != 1 || len(fk[2].drops) != 1 || len(fk[0].drops) != 0 || len(fk[3].drops) != 0 {
		t.Fatalf("drops after partition: %v %v %v %v", fk[0].drops, fk[1].drops, fk[2].drops, fk[3].drops)
	}
	n.RunFor(time.Hour)
	if len(fk[2].connects) != 2 { // its two original links only
		t.Fatalf("node 3 dialled across the partition: %d connects", len(fk[2].connects))
	}
	healed := n.Now()
	n.Heal()
	n.RunFor(time.Minute)
	if len(fk[2].connects) != 3 {
		t.Fatalf("node 3 has %d connects after heal, want 3", len(fk[2].connects))
	}
	last := fk[2].connects[2]
	if !last.station || last.at.Sub(healed) != time.Second {
		t.Errorf("reconnect %+v: want station side, 1s after heal", last)
	}
	if len(nd[1].Neighbours()) != 2 {
		t.Errorf("node 2 has %d neighbours after heal, want 2", len(nd[1].Neighbours()))
	}
}

func TestFlaps(t *testing.T) {
	m := Model{Link: Link{Latency: time.Millisecond, FlapInterval: 10 * time.Second}}
	n, nd, fk := fakeNet(t, Config{Model: m, Seed: 11, Redial: 3 * time.Second}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	n.RunFor(time.Hour)
	flaps := n.Stats().Flaps
	// Up for 10 s on average, then down 3 s: about 3600/13 ≈ 277 cycles.
	if flaps < 200 || flaps > 360 {
		t.Errorf("%d flaps in an hour, want about 277", flaps)
	}
	if uint64(len(fk[0].drops)) != flaps || uint64(len(fk[1].connects)) != flaps+1 &&
		uint64(len(fk[1].connects)) != flaps {
		t.Errorf("flaps %d, drops %d, connects %d", flaps, len(fk[0].drops), len(fk[1].connects))
	}
}

func TestTickAtDeadline(t *testing.T) {
	n, nd, fk := fakeNet(t, Config{}, 1)
	if err := nd[0].Step(func(now time.Time, m Machine) {
		m.(*fake).deadline = now.Add(1500 * time.Millisecond)
	}); err != nil {
		t.Fatal(err)
	}
	n.RunFor(10 * time.Second)
	if len(fk[0].ticks) != 1 || since(n, fk[0].ticks[0]) != 1500*time.Millisecond {
		t.Errorf("ticks %v, want one at 1.5s", fk[0].ticks)
	}
	// A deadline in the past ticks at once.
	if err := nd[0].Step(func(now time.Time, m Machine) { m.(*fake).deadline = now.Add(-time.Second) }); err != nil {
		t.Fatal(err)
	}
	n.RunFor(time.Millisecond)
	if len(fk[0].ticks) != 2 || since(n, fk[0].ticks[1]) != 10*time.Second {
		t.Errorf("ticks %v, want a second one at 10s", fk[0].ticks)
	}
}

func TestRunUntilStopsAtFirstInstant(t *testing.T) {
	m := Model{Link: Link{Latency: 7 * time.Millisecond}}
	n, nd, fk := fakeNet(t, Config{Model: m}, 2)
	if err := n.Connect(nd[1], nd[0]); err != nil {
		t.Fatal(err)
	}
	sendOn(t, nd[1], nd[0], mesh.PriorityNormal, "x")
	if !n.RunUntil(func() bool { return len(fk[0].got) > 0 }, time.Second) {
		t.Fatal("condition never held")
	}
	if n.Elapsed() != 7*time.Millisecond {
		t.Errorf("stopped at %v, want 7ms", n.Elapsed())
	}
	if n.RunUntil(func() bool { return false }, time.Second) {
		t.Error("false condition reported true")
	}
	if n.Elapsed() != 1007*time.Millisecond {
		t.Errorf("limit reached at %v, want 1.007s", n.Elapsed())
	}
}

// Same seed, same run: the engine draws jitter, loss and flaps from the
// seeded source only.
func TestEngineDeterminism(t *testing.T) {
	run := func(seed uint64) [32]byte {
		m := Model{
			Radio: Radio{TxOverhead: time.Millisecond, ByteTime: 5 * time.Microsecond},
			Link:  Link{Latency: time.Millisecond, Jitter: 3 * time.Millisecond, Loss: 0.05, FlapInterval: 20 * time.Second},
		}
		n, nd, fk := fakeNet(t, Config{Model: m, Seed: seed}, 12)
		if err := n.RandomTree(nd, 3); err != nil {
			t.Fatal(err)
		}
		for i, f := range fk {
			f.onRecv = func(f *fake, now time.Time, c mesh.ConnID, msg []byte) {
				// Relay to every other connection, a few hops at most.
				if len(msg) < 40 {
					for _, o := range f.conns {
						if o != c {
							f.send(o, string(msg)+"+", mesh.PriorityNormal)
						}
					}
				}
			}
			src := nd[i]
			for k := range 20 {
				n.After(time.Duration(k)*time.Second+time.Duration(i)*time.Millisecond, func() {
					if c := src.Machine().(*fake).conns; len(c) > 0 {
						_ = src.Step(func(now time.Time, m Machine) {
							m.(*fake).send(c[0], fmt.Sprint(src.ID(), "/", k), mesh.PriorityNormal)
						})
					}
				})
			}
		}
		n.RunFor(time.Minute)
		return n.TraceDigest()
	}
	a, b, c := run(1), run(1), run(2)
	if a != b {
		t.Error("same seed gave different traces")
	}
	if a == c {
		t.Error("different seeds gave the same trace")
	}
}

func TestBuilders(t *testing.T) {
	count := func(nd *Node, station bool) int {
		k := 0
		for _, l := range nd.links {
			if (l.ends[0] == nd) == station {
				k++
			}
		}
		return k
	}
	t.Run("tree", func(t *testing.T) {
		n, nd, _ := fakeNet(t, Config{}, 13)
		if err := n.Tree(nd, 3, 2); err != nil {
			t.Fatal(err)
		}
		for i, x := range nd {
			wantChildren := 0
			if i < 4 {
				wantChildren = 3
			}
			if got := count(x, false); got != wantChildren {
				t.Errorf("node %d has %d children, want %d", i, got, wantChildren)
			}
		}
		_, nd2, _ := fakeNet(t, Config{}, 14)
		if err := nd2[0].Network().Tree(nd2, 3, 2); err == nil {
			t.Error("14 nodes fit depth 2 with fan-out 3")
		}
		if treeDepth(14, 0+3) != 3 || treeDepth(1, 3) != 0 || treeDepth(4, 3) != 1 {
			t.Error("treeDepth")
		}
		_, nd3, _ := fakeNet(t, Config{}, 100)
		if err := nd3[0].Network().Tree(nd3, 0, 2); err != nil {
			t.Fatal(err)
		}
		if got := count(nd3[0], false); got != 10 { // 1+10+100 ≥ 100 > 1+9+81
			t.Errorf("depth-limited tree picked fan-out %d, want 10", got)
		}
	})
	t.Run("random", func(t *testing.T) {
		n, nd, _ := fakeNet(t, Config{Seed: 5}, 200)
		if err := n.RandomTree(nd, 4); err != nil {
			t.Fatal(err)
		}
		maxKids := 0
		for i, x := range nd {
			up := count(x, true)
			if (i == 0 && up != 0) || (i > 0 && up != 1) {
				t.Errorf("node %d has %d uplinks", i, up)
			}
			maxKids = max(maxKids, count(x, false))
		}
		if maxKids != 4 {
			t.Errorf("max children %d, want exactly the limit 4 somewhere in 200 nodes", maxKids)
		}
	})
	t.Run("star-chain", func(t *testing.T) {
		n, nd, _ := fakeNet(t, Config{}, 6)
		if err := n.Star(nd); err != nil {
			t.Fatal(err)
		}
		if count(nd[0], false) != 5 {
			t.Error("star hub")
		}
		n2, nd2, _ := fakeNet(t, Config{}, 6)
		if err := n2.Chain(nd2); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < 6; i++ {
			if nb := nd2[i].Neighbours(); nb[0] != nd2[i-1] {
				t.Errorf("chain node %d uplink %d", i, nb[0].ID())
			}
		}
		if err := n2.Connect(nd2[0], nd2[0]); err == nil {
			t.Error("self link accepted")
		}
	})
}

func TestBadInputs(t *testing.T) {
	n := New(Config{})
	if _, err := n.AddNode(NodeSpec{}); err == nil {
		t.Error("zero id accepted")
	}
	if _, err := ParseModel("esp9000"); err == nil {
		t.Error("unknown model accepted")
	}
	if _, err := ParseTopology("ring"); err == nil {
		t.Error("unknown topology accepted")
	}
	bad := ESP8266()
	bad.Link.Loss = 1.5
	if bad.Validate() == nil {
		t.Error("loss 1.5 accepted")
	}
	bad.Link.Loss = math.NaN()
	if bad.Validate() == nil {
		t.Error("NaN loss accepted")
	}
	for _, name := range Models() {
		m, err := ParseModel(name)
		if err != nil || m.Validate() != nil || m.Name != name {
			t.Errorf("preset %s: %v %v", name, err, m.Validate())
		}
	}
}
