package tcp

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

func TestOutQueueTakesByPriorityThenFIFO(t *testing.T) {
	q := newOutQueue(1 << 20)
	// Pushed lowest priority first; each message names its priority and
	// its place within that priority.
	for i := range 2 {
		for _, p := range []mesh.Priority{mesh.PriorityLow, mesh.PriorityNormal, mesh.PriorityHigh, mesh.PriorityCritical} {
			if q.push(p, fmt.Appendf(nil, "p%d-%d", p, i)) != pushed {
				t.Fatalf("push p%d-%d refused", p, i)
			}
		}
	}
	batch, _, _ := q.take(nil, 1<<20)
	var got []string
	for _, m := range batch {
		got = append(got, string(m))
	}
	want := []string{"p0-0", "p0-1", "p1-0", "p1-1", "p2-0", "p2-1", "p3-0", "p3-1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("take order = %v, want %v", got, want)
	}
	if q.bytes != 0 {
		t.Fatalf("queue bytes after taking all = %d, want 0", q.bytes)
	}
}

func TestOutQueueBatchLimitKeepsWholeMessages(t *testing.T) {
	q := newOutQueue(1 << 20)
	q.push(mesh.PriorityNormal, make([]byte, 100))
	q.push(mesh.PriorityNormal, make([]byte, 100))
	// A limit smaller than one message still yields that whole message.
	batch, _, _ := q.take(nil, 10)
	if len(batch) != 1 || len(batch[0]) != 100 {
		t.Fatalf("take with small limit = %d messages, want 1 whole message", len(batch))
	}
	// A message arriving at a higher priority goes out before the rest.
	q.push(mesh.PriorityHigh, []byte("urgent"))
	batch, _, _ = q.take(nil, 10)
	if len(batch) != 1 || string(batch[0]) != "urgent" {
		t.Fatalf("next take = %q, want the high-priority message", batch)
	}
}

func TestOutQueueDropsWhenFullOrClosing(t *testing.T) {
	q := newOutQueue(25) // 2 messages of 10 bytes plus NULs
	m := make([]byte, 10)
	for i := range 2 {
		if q.push(mesh.PriorityNormal, m) != pushed {
			t.Fatalf("push %d within the limit refused", i+1)
		}
	}
	if got := q.push(mesh.PriorityCritical, m); got != pushFull {
		t.Fatalf("push over the byte limit: %v, want pushFull", got)
	}
	q.take(nil, 1<<20)
	if q.push(mesh.PriorityNormal, m) != pushed {
		t.Fatal("push refused after the queue was emptied")
	}
	q.drain()
	if got := q.push(mesh.PriorityNormal, m); got != pushClosing {
		t.Fatalf("push while draining: %v, want pushClosing", got)
	}
	batch, draining, stopped := q.take(nil, 1<<20)
	if len(batch) != 1 || !draining || stopped {
		t.Fatalf("take while draining = %d messages, draining %v, stopped %v; want the queued message, true, false", len(batch), draining, stopped)
	}
	q.stop()
	if _, _, stopped := q.take(nil, 1<<20); !stopped {
		t.Fatal("take after stop does not report stopped")
	}
}

type testEvent struct {
	mesh.EventBase
	n int
}

func TestEmitDropsOldestWhenFull(t *testing.T) {
	d := &Driver{events: make(chan mesh.Event, 3)}
	for i := range 10 {
		d.emit(testEvent{n: i})
	}
	if got := d.Stats().EventsDropped; got != 7 {
		t.Fatalf("EventsDropped = %d, want 7", got)
	}
	close(d.events)
	var got []int
	for ev := range d.events {
		got = append(got, ev.(testEvent).n)
	}
	if fmt.Sprint(got) != "[7 8 9]" {
		t.Fatalf("events kept = %v, want the newest three [7 8 9]", got)
	}
}

func TestBackoffStockSchedule(t *testing.T) {
	b, err := Backoff{Jitter: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	bo := newBackoff(b)
	var got []time.Duration
	for range 6 {
		got = append(got, bo.delay())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays = %v, want %v (docs/protocol.md §3.2)", got, want)
	}
	bo.reset()
	if d := bo.delay(); d != time.Second {
		t.Fatalf("delay after reset = %v, want 1s", d)
	}
}

func TestBackoffJitterStaysInBounds(t *testing.T) {
	b, _ := Backoff{Initial: 100 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.25}.withDefaults()
	bo := newBackoff(b)
	seen := map[time.Duration]bool{}
	for range 200 {
		d := bo.delay()
		if d < 75*time.Millisecond || d > 125*time.Millisecond {
			t.Fatalf("jittered delay %v outside 100ms ±25%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Fatal("jitter never varied the delay")
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for name, c := range map[string]Config{
		"zero id":         {Listen: ":0"},
		"no addresses":    {Node: mesh.Config{ID: 1}},
		"empty connect":   {Node: mesh.Config{ID: 1}, Connect: []string{""}},
		"negative size":   {Node: mesh.Config{ID: 1}, Listen: ":0", MaxMessageSize: -1},
		"jitter too high": {Node: mesh.Config{ID: 1}, Listen: ":0", Backoff: Backoff{Jitter: 1}},
	} {
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New(%+v) err = %v, want ErrInvalidConfig", name, c, err)
		}
	}
}
