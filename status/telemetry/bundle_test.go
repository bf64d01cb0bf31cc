package telemetry

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func bundleOf(entries ...BundleEntry) []byte {
	b := AppendBundleHeader(nil)
	for _, e := range entries {
		b = AppendBundleEntry(b, e)
	}
	return b
}

// The property a relay relies on: frames taken from bundles decode to the
// same per-node values, headers and losses as the same frames sent alone,
// whatever the mix of nodes, keyframes, deltas and bundle boundaries.
func TestBundledFramesDecodeAsSingleFrames(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 14))
		nodes := []uint32{3, 70000, 0xFFFFFFFF, 12}
		enc := map[uint32]*Encoder{}
		for _, n := range nodes {
			enc[n] = NewEncoder(EncoderConfig{KeyframeEvery: 1 + rng.IntN(12)})
		}
		single, bundled := NewDecoder(), NewDecoder()
		var pending []BundleEntry
		size := 1
		flush := func() {
			if len(pending) == 0 {
				return
			}
			entries, err := ParseBundle(bundleOf(pending...))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			for i, e := range entries {
				if e.Node != pending[i].Node || !bytes.Equal(e.Frame, pending[i].Frame) {
					t.Fatalf("seed %d: entry %d changed", seed, i)
				}
				want, werr := single.Decode(e.Node, e.Frame)
				got, gerr := bundled.Decode(e.Node, e.Frame)
				if (werr == nil) != (gerr == nil) || want != got {
					t.Fatalf("seed %d node %d: bundled %+v, %v; alone %+v, %v", seed, e.Node, got, gerr, want, werr)
				}
			}
			pending, size = pending[:0], 1
		}
		base := map[uint32]Values{}
		for i := range 400 {
			n := nodes[rng.IntN(len(nodes))]
			v, ok := base[n]
			if !ok || rng.IntN(4) == 0 {
				v = randomValues(rng, rng.IntN(2) == 0)
				base[n] = v
			} else {
				v.Uptime += uint32(rng.IntN(30))
				v.MessagesTx += uint32(rng.IntN(500))
				v.FreeMemory -= uint32(rng.IntN(100))
			}
			frame := enc[n].Encode(t0.Add(time.Duration(i)*time.Second), uint32(i), v, rng.IntN(5) == 0)
			if rng.IntN(10) == 0 {
				continue // lost before the relay: both decoders miss it
			}
			if size+EntrySize(len(frame)) > MaxBundleSize || rng.IntN(6) == 0 {
				flush()
			}
			pending = append(pending, BundleEntry{Node: n, Waited: time.Duration(rng.IntN(3000)) * time.Millisecond, Frame: frame})
			size += EntrySize(len(frame))
		}
		flush()
	}
}

func TestParseBundleErrors(t *testing.T) {
	e := NewEncoder(EncoderConfig{})
	frame := e.Encode(t0, 1, Values{Uptime: 5}, false)
	good := bundleOf(BundleEntry{Node: 9, Frame: frame})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"no entries", []byte{BundleVersion}},
		{"version", append([]byte{2}, good[1:]...)},
		{"node 0", bundleOf(BundleEntry{Node: 0, Frame: frame})},
		{"truncated entry header", good[:4]},
		{"truncated frame", good[:len(good)-1]},
		{"short frame length", append(good[:5:5], 3, 1, 0, 0)},
		{"frame too long", append(good[:5:5], 65)},
		{"bad frame header", bundleOf(BundleEntry{Node: 9, Frame: append([]byte{7}, frame[1:]...)})},
		{"too large", append(bytes.Repeat(good, 40)[:MaxBundleSize], 0)},
	} {
		if _, err := ParseBundle(tc.b); !errors.Is(err, ErrBundle) {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	entries, err := ParseBundle(bundleOf(BundleEntry{Node: 9, Waited: 5 * time.Second, Frame: frame},
		BundleEntry{Node: 10, Waited: 127 * time.Millisecond, Frame: frame}))
	if err != nil || len(entries) != 2 || entries[0].Waited != maxWait || entries[1].Waited != 120*time.Millisecond {
		t.Errorf("waited times: %+v, %v", entries, err)
	}
}

func TestUrgent(t *testing.T) {
	e := NewEncoder(EncoderConfig{})
	key := e.Encode(t0, 1, Values{Uptime: 5}, false)
	delta := e.Encode(t0, 2, Values{Uptime: 6}, false)
	early := e.Encode(t0, 3, Values{Uptime: 6, Alerts: 1}, true)
	if !Urgent(key) || Urgent(delta) || !Urgent(early) || Urgent([]byte{1}) {
		t.Errorf("urgent: key %v delta %v priority %v", Urgent(key), Urgent(delta), Urgent(early))
	}
}

// FuzzParseBundle: a hostile bundle is refused with ErrBundle or splits
// into entries that write back to the very same bytes (waited times are
// whole units), and whose frames a Decoder then handles without panic.
func FuzzParseBundle(f *testing.F) {
	e := NewEncoder(EncoderConfig{})
	key := e.Encode(t0, 1, Values{Uptime: 5, FreeMemory: 40000, Nodes: 9}, false)
	delta := e.Encode(t0, 2, Values{Uptime: 6, FreeMemory: 39000, Nodes: 9}, true)
	f.Add(bundleOf(BundleEntry{Node: 1, Frame: key}, BundleEntry{Node: 1, Waited: 30 * time.Millisecond, Frame: delta}))
	f.Add(bundleOf(BundleEntry{Node: 1, Frame: delta}, BundleEntry{Node: 2, Frame: key}))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 9})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseBundle(b)
		if err != nil {
			if !errors.Is(err, ErrBundle) {
				t.Fatalf("error outside the set: %v", err)
			}
			return
		}
		if again := bundleOf(entries...); !bytes.Equal(again, b) {
			t.Fatalf("entries write back as %x, read from %x", again, b)
		}
		d := NewDecoder()
		for _, en := range entries {
			_, _ = d.Decode(en.Node, en.Frame)
		}
	})
}
