package alert

import (
	"testing"
	"time"
)

// TestEveryRuleRaisesAndClears walks the rule table: each row raises its
// alert when its condition appears and clears it when the condition goes,
// and each row of a kind with an alert bit also raises on that bit alone.
// A row added to the table without a case here fails the test.
func TestEveryRuleRaisesAndClears(t *testing.T) {
	const node = 7
	good := func(f *feeder) []Change { return append(f.step(node, nil), f.step(node, nil)...) }
	sample := func(change func(*Sample)) func(f *feeder) []Change {
		return func(f *feeder) []Change { return f.step(node, change) }
	}
	type driver struct {
		raise, clear func(f *feeder) []Change
		severity     Severity
	}
	drivers := map[string]driver{
		"low_memory":   {sample(func(s *Sample) { s.FreeMemory = 4000 }), good, SeverityCritical},
		"high_latency": {sample(func(s *Sample) { s.LatencyUs = 900_000 }), good, SeverityWarning},
		"packet_loss":  {sample(func(s *Sample) { s.LossPermille = 120 }), good, SeverityWarning},
		"weak_wifi":    {sample(func(s *Sample) { s.RSSI = -90 }), good, SeverityWarning},
		"ota_failed":   {sample(func(s *Sample) { s.OTAFailed = true }), good, SeverityCritical},
		// Flag rules have no condition of their own: see the flag pass below.
		"connection_lost": {nil, nil, SeverityWarning},
		"sensor_error":    {nil, nil, SeverityWarning},
		"reboot_loop": {
			raise: func(f *feeder) []Change {
				var cs []Change
				for range 3 { // three restarts, one per sample
					f.now = f.now.Add(30 * time.Second)
					f.up = 5
					cs = append(cs, f.e.Observe(f.now, node, healthy(f.up))...)
				}
				return cs
			},
			clear:    func(f *feeder) []Change { return f.e.Tick(f.now.Add(10 * time.Minute)) },
			severity: SeverityCritical,
		},
		"node_offline": {
			raise:    func(f *feeder) []Change { return f.e.SetOnline(f.now, node, false, "overdue") },
			clear:    func(f *feeder) []Change { return f.e.SetOnline(f.now, node, true, "report") },
			severity: SeverityCritical,
		},
		"anomaly_drop_rate": {
			raise: func(f *feeder) []Change {
				for range 10 { // a quiet baseline
					f.step(node, nil)
				}
				return f.step(node, func(s *Sample) { s.MessagesDropped = 900 })
			},
			clear: func(f *feeder) []Change {
				var cs []Change
				for range 3 {
					cs = append(cs, f.step(node, func(s *Sample) { s.MessagesDropped = 900 })...)
				}
				return cs
			},
			severity: SeverityWarning,
		},
		"anomaly_memory_trend": {
			raise: func(f *feeder) []Change {
				for range 10 {
					f.step(node, nil)
				}
				return f.step(node, func(s *Sample) { s.FreeMemory = 30_000 })
			},
			clear: func(f *feeder) []Change {
				var cs []Change
				for range 3 {
					cs = append(cs, f.step(node, func(s *Sample) { s.FreeMemory = 30_000 })...)
				}
				return cs
			},
			severity: SeverityWarning,
		},
	}
	only := func(t *testing.T, cs []Change, tr Transition, typ string) Alert {
		t.Helper()
		var found []Alert
		for _, c := range cs {
			if c.Transition == tr && c.Alert.Type() == typ {
				found = append(found, c.Alert)
			}
		}
		if len(found) != 1 {
			t.Fatalf("want one %s %s, got %+v", tr, typ, cs)
		}
		return found[0]
	}
	for _, r := range rules {
		typ := (&Alert{Kind: r.kind, Metric: r.metric}).Type()
		t.Run(typ, func(t *testing.T) {
			d, ok := drivers[typ]
			if !ok {
				t.Fatalf("rule %s has no case in this test", typ)
			}
			if d.raise != nil {
				f := newFeeder(Config{})
				f.step(node, nil)
				a := only(t, d.raise(f), Raised, typ)
				if a.Severity != d.severity || !a.Active || a.Node != node {
					t.Fatalf("raised %+v", a)
				}
				if a = only(t, d.clear(f), Cleared, typ); a.Active {
					t.Fatalf("cleared %+v", a)
				}
				if len(f.e.Active()) != 0 {
					t.Fatalf("left active: %+v", f.e.Active())
				}
			}
			if r.kind.Flag() == 0 {
				return
			}
			// The node's own bit raises the rule's alert and clearing the bit clears it.
			f := newFeeder(Config{})
			f.step(node, nil)
			a := only(t, f.step(node, func(s *Sample) { s.Flags = r.kind.Flag() }), Raised, typ)
			if a.Severity != r.severity {
				t.Fatalf("flag raised %+v", a)
			}
			only(t, good(f), Cleared, typ)
			// Unless the engine ignores node flags.
			f = newFeeder(Config{IgnoreNodeFlags: true})
			none(t, f.step(node, func(s *Sample) { s.Flags = r.kind.Flag() }))
		})
	}
}
