package telemetry

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// The two frames below are worked out by hand from the layout in the
// package comment, not produced by the encoder.
func TestGoldenFrames(t *testing.T) {
	v := Values{Uptime: 300, Connections: 2, RSSI: -70, FirmwareHash: 0x01020304}
	key := []byte{
		0x01, 0x05, // version, flags keyframe|start
		0x00, 0x00, // seq 0
		0x01,                   // keyframe id 1
		0x0D, 0x0C, 0x0B, 0x0A, // timestamp 0x0A0B0C0D
		0xAC, 0x02, // uptime 300
		0, 0, 0, 0, 0, 0, 0, 0, 0, // freeMemory .. interval
		0x02, 0xBA, 0, 0, 0, 0, 0, // connections 2, rssi -70, wifi .. otaProgress
		0x04, 0x03, 0x02, 0x01, // firmware hash
	}
	e := NewEncoder(EncoderConfig{})
	got := e.Encode(t0, 0x0A0B0C0D, v, false)
	if !bytes.Equal(got, key) {
		t.Fatalf("keyframe\n got % x\nwant % x", got, key)
	}
	v.Uptime = 330
	v.Alerts = 0x41
	delta := []byte{
		0x01, 0x00, 0x01, 0x00, 0x01, 0x0D, 0x0C, 0x0B, 0x0A,
		0x81, 0x40, // presence: bit0 uptime | bit13 alerts = 8193
		0x3C, // uptime +30, zigzag 60
		0x41, // alerts, raw
	}
	got = e.Encode(t0.Add(time.Second), 0x0A0B0C0D, v, false)
	if !bytes.Equal(got, delta) {
		t.Fatalf("delta\n got % x\nwant % x", got, delta)
	}

	d := NewDecoder()
	f, err := d.Decode(7, key)
	if err != nil || !f.Keyframe || !f.Start || f.KeyframeID != 1 || f.Timestamp != 0x0A0B0C0D {
		t.Fatalf("decode keyframe: %+v, %v", f.Header, err)
	}
	f, err = d.Decode(7, delta)
	if err != nil {
		t.Fatal(err)
	}
	if f.Values != v {
		t.Fatalf("decoded %+v, want %+v", f.Values, v)
	}
}

// randomValues draws a full set of values; extreme picks the edges of each
// field's range half of the time.
func randomValues(r *rand.Rand, extreme bool) Values {
	u32 := func() uint32 {
		if extreme && r.IntN(2) == 0 {
			return []uint32{0, 1, 127, 128, math.MaxUint32, math.MaxUint32 - 1}[r.IntN(6)]
		}
		return r.Uint32() >> r.IntN(32)
	}
	return Values{
		Uptime: u32(), FreeMemory: u32(), MessagesRx: u32(), MessagesTx: u32(), MessagesDropped: u32(),
		Latency: u32(), Throughput: u32(),
		Nodes: uint16(u32()), LossPermille: uint16(r.IntN(1001)), Interval: uint16(u32()),
		Connections: uint8(u32()), RSSI: int8(u32()), WiFi: uint8(u32()), Alerts: uint8(u32()),
		DeviceStatus: uint8(u32()), OTAState: uint8(u32()), OTAProgress: uint8(u32()),
		FirmwareHash: u32(),
	}
}

// step changes a few values the way a node's metrics move: counters grow,
// gauges wander, now and then something jumps.
func step(r *rand.Rand, v Values) Values {
	v.Uptime += uint32(r.IntN(60))
	v.MessagesRx += uint32(r.IntN(500))
	v.MessagesTx += uint32(r.IntN(500))
	if r.IntN(4) == 0 {
		v.MessagesDropped += uint32(r.IntN(5))
	}
	v.FreeMemory = uint32(int64(v.FreeMemory) + int64(r.IntN(2001)) - 1000)
	v.Latency = uint32(r.IntN(20000))
	v.Throughput = uint32(r.IntN(5000))
	v.LossPermille = uint16(r.IntN(1001))
	v.RSSI = int8(-40 - r.IntN(50))
	if r.IntN(10) == 0 {
		v.Alerts ^= 1 << r.IntN(8)
	}
	if r.IntN(20) == 0 {
		v = randomValues(r, true)
	}
	return v
}

func TestReconstructRandomSequences(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		e := NewEncoder(EncoderConfig{KeyframeEvery: 1 + r.IntN(20)})
		d := NewDecoder()
		v := randomValues(r, false)
		now := t0
		for i := 0; i < 500; i++ {
			v = step(r, v)
			now = now.Add(time.Duration(r.IntN(30)) * time.Second)
			frame := e.Encode(now, uint32(i*1000), v, r.IntN(10) == 0)
			if len(frame) > MaxFrameSize {
				t.Fatalf("seed %d frame %d: %d bytes", seed, i, len(frame))
			}
			f, err := d.Decode(42, frame)
			if err != nil {
				t.Fatalf("seed %d frame %d: %v", seed, i, err)
			}
			if f.Values != v {
				t.Fatalf("seed %d frame %d: got %+v want %+v", seed, i, f.Values, v)
			}
			if f.Missed != 0 || f.Seq != uint16(i) {
				t.Fatalf("seed %d frame %d: seq %d missed %d", seed, i, f.Seq, f.Missed)
			}
		}
	}
}

func TestDroppedFramesRecoverAtKeyframe(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 2))
		e := NewEncoder(EncoderConfig{KeyframeEvery: 8})
		d := NewDecoder()
		v := randomValues(r, false)
		var accepted, refused, lastAccepted int
		lastAccepted = -1
		lostKey := false
		for i := 0; i < 400; i++ {
			v = step(r, v)
			frame := e.Encode(t0, 0, v, false)
			h, err := ParseHeader(frame)
			if err != nil {
				t.Fatal(err)
			}
			if r.IntN(4) == 0 { // 25% loss, keyframes included
				if h.Keyframe {
					lostKey = true
				}
				continue
			}
			f, err := d.Decode(9, frame)
			switch {
			case err == nil:
				if f.Values != v {
					t.Fatalf("seed %d frame %d: wrong values after loss", seed, i)
				}
				if lastAccepted >= 0 && f.Missed != i-lastAccepted-1 {
					t.Fatalf("seed %d frame %d: missed %d, want %d", seed, i, f.Missed, i-lastAccepted-1)
				}
				if h.Keyframe {
					lostKey = false
				} else if lostKey {
					t.Fatalf("seed %d frame %d: delta accepted although its keyframe was lost", seed, i)
				}
				lastAccepted = i
				accepted++
			case errors.Is(err, ErrKeyframeMismatch):
				if !lostKey {
					t.Fatalf("seed %d frame %d: refused although the keyframe arrived: %v", seed, i, err)
				}
				if !d.NeedsKeyframe(9) {
					t.Fatal("NeedsKeyframe false after a refused delta")
				}
				refused++
			default:
				t.Fatalf("seed %d frame %d: %v", seed, i, err)
			}
		}
		if accepted == 0 || refused == 0 {
			t.Fatalf("seed %d: accepted %d refused %d; the test exercised nothing", seed, accepted, refused)
		}
	}
}

func TestRequestedKeyframeEndsRefusals(t *testing.T) {
	e := NewEncoder(EncoderConfig{KeyframeEvery: 1000, KeyframeInterval: time.Hour})
	d := NewDecoder()
	v := Values{Uptime: 1, FreeMemory: 40000}
	if _, err := d.Decode(1, e.Encode(t0, 0, v, false)); err != nil {
		t.Fatal(err)
	}
	v.Uptime = 2
	if _, err := d.Decode(1, e.Encode(t0, 0, v, false)); err != nil {
		t.Fatal(err)
	}
	e.RequestKeyframe()
	v.Uptime = 3
	_ = e.Encode(t0, 0, v, false) // this keyframe is lost
	v.Uptime = 4
	if _, err := d.Decode(1, e.Encode(t0, 0, v, false)); !errors.Is(err, ErrKeyframeMismatch) {
		t.Fatalf("delta after lost keyframe: %v", err)
	}
	if !d.NeedsKeyframe(1) {
		t.Fatal("decoder does not ask for a keyframe")
	}
	e.RequestKeyframe()
	v.Uptime = 5
	f, err := d.Decode(1, e.Encode(t0, 0, v, false))
	if err != nil || !f.Keyframe || f.Values != v || f.Missed != 2 {
		t.Fatalf("requested keyframe: %+v, %v", f, err)
	}
	if d.NeedsKeyframe(1) {
		t.Fatal("NeedsKeyframe still true after a keyframe")
	}
}

func TestKeyframeCadence(t *testing.T) {
	e := NewEncoder(EncoderConfig{KeyframeEvery: 4, KeyframeInterval: 10 * time.Second})
	var kinds []bool
	now := t0
	for i := 0; i < 9; i++ {
		h, _ := ParseHeader(e.Encode(now, 0, Values{Uptime: uint32(i)}, false))
		kinds = append(kinds, h.Keyframe)
		now = now.Add(time.Second)
	}
	want := []bool{true, false, false, false, true, false, false, false, true}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("every-4 cadence: keyframe flags %v, want %v", kinds, want)
		}
	}
	// By time: frames 6 s apart with K large; the interval is 10 s.
	e = NewEncoder(EncoderConfig{KeyframeEvery: 100, KeyframeInterval: 10 * time.Second})
	kinds = kinds[:0]
	for i := 0; i < 5; i++ {
		h, _ := ParseHeader(e.Encode(t0.Add(time.Duration(i)*6*time.Second), 0, Values{Uptime: uint32(i)}, false))
		kinds = append(kinds, h.Keyframe)
	}
	want = []bool{true, false, true, false, true} // 0 s, 6 s, 12 s (≥10 after 0), 18 s, 24 s (≥10 after 12)
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("10 s cadence: keyframe flags %v, want %v", kinds, want)
		}
	}
}

func TestFlagsAndStart(t *testing.T) {
	e := NewEncoder(EncoderConfig{})
	h, _ := ParseHeader(e.Encode(t0, 0, Values{}, false))
	if !h.Start || !h.Keyframe || h.Priority {
		t.Fatalf("first frame header %+v", h)
	}
	h, _ = ParseHeader(e.Encode(t0, 0, Values{Alerts: 1}, true))
	if h.Start || h.Keyframe || !h.Priority {
		t.Fatalf("second frame header %+v", h)
	}
}

func TestStaleAndDuplicateDeltas(t *testing.T) {
	e := NewEncoder(EncoderConfig{})
	d := NewDecoder()
	f0 := e.Encode(t0, 0, Values{Uptime: 1}, false)
	f1 := e.Encode(t0, 0, Values{Uptime: 2}, false)
	f2 := e.Encode(t0, 0, Values{Uptime: 3}, false)
	for _, f := range [][]byte{f0, f2} {
		if _, err := d.Decode(5, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range [][]byte{f1, f2} { // older, then a duplicate
		if _, err := d.Decode(5, f); !errors.Is(err, ErrStale) {
			t.Fatalf("want ErrStale, got %v", err)
		}
	}
}

func TestNodeRestartIsAccepted(t *testing.T) {
	d := NewDecoder()
	e := NewEncoder(EncoderConfig{})
	for i := 0; i < 300; i++ {
		if _, err := d.Decode(3, e.Encode(t0, 0, Values{Uptime: uint32(i)}, false)); err != nil {
			t.Fatal(err)
		}
	}
	e = NewEncoder(EncoderConfig{}) // the node rebooted: sequence starts again at 0
	for i := 0; i < 3; i++ {
		f, err := d.Decode(3, e.Encode(t0, 0, Values{Uptime: uint32(i)}, false))
		if err != nil || f.Values.Uptime != uint32(i) {
			t.Fatalf("after restart, frame %d: %+v %v", i, f, err)
		}
	}
}

func TestSequenceWraps(t *testing.T) {
	e := NewEncoder(EncoderConfig{KeyframeEvery: 7})
	d := NewDecoder()
	for i := 0; i < 70000; i++ {
		v := Values{Uptime: uint32(i), MessagesRx: uint32(i * 3)}
		f, err := d.Decode(1, e.Encode(t0, uint32(i), v, false))
		if err != nil || f.Values != v || f.Missed != 0 {
			t.Fatalf("frame %d: %+v %v", i, f.Header, err)
		}
	}
}

func TestLossIsClamped(t *testing.T) {
	d := NewDecoder()
	f, err := d.Decode(1, NewEncoder(EncoderConfig{}).Encode(t0, 0, Values{LossPermille: 5000}, false))
	if err != nil || f.Values.LossPermille != 1000 {
		t.Fatalf("loss %d, %v", f.Values.LossPermille, err)
	}
}

// TestSizeBound checks the 64-byte bound on extreme values, which is where
// the varints are longest, and on every transition between them.
func TestSizeBound(t *testing.T) {
	maxV := Values{
		Uptime: math.MaxUint32, FreeMemory: math.MaxUint32, MessagesRx: math.MaxUint32,
		MessagesTx: math.MaxUint32, MessagesDropped: math.MaxUint32, Latency: math.MaxUint32,
		Throughput: math.MaxUint32, Nodes: math.MaxUint16, LossPermille: 1000, Interval: math.MaxUint16,
		Connections: 255, RSSI: -128, WiFi: 255, Alerts: 255, DeviceStatus: 255, OTAState: 255,
		OTAProgress: 255, FirmwareHash: math.MaxUint32,
	}
	e := NewEncoder(EncoderConfig{KeyframeEvery: 1000, KeyframeInterval: time.Hour})
	seqs := []Values{{}, maxV, {}, maxV, maxV, {Uptime: 1}}
	largest := 0
	for _, v := range seqs {
		n := len(e.Encode(t0, math.MaxUint32, v, true))
		largest = max(largest, n)
	}
	if largest > MaxFrameSize {
		t.Fatalf("frame of %d bytes", largest)
	}
	r := rand.New(rand.NewPCG(7, 7))
	d := NewDecoder()
	for i := 0; i < 20000; i++ {
		v := randomValues(r, true)
		frame := e.Encode(t0, r.Uint32(), v, false)
		if len(frame) > MaxFrameSize {
			t.Fatalf("frame %d: %d bytes for %+v", i, len(frame), v)
		}
		if f, err := d.Decode(1, frame); err != nil || f.Values != v {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
}

func TestHostileFrames(t *testing.T) {
	good := NewEncoder(EncoderConfig{}).Encode(t0, 0, Values{Uptime: 300}, false)
	cases := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:5], ErrTruncated},
		{"too large", make([]byte, 65), ErrTooLarge},
		{"version 2", append([]byte{2}, good[1:]...), ErrVersion},
		{"reserved flag", append([]byte{1, 0x09}, good[2:]...), ErrMalformed},
		{"truncated keyframe", good[:len(good)-1], ErrTruncated},
		{"trailing byte", append(append([]byte{}, good...), 0), ErrMalformed},
		{"varint overflow", append(append([]byte{}, good[:9]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrMalformed},
		{"uptime over u32", append(append([]byte{}, good[:9]...), 0x80, 0x80, 0x80, 0x80, 0x10), ErrMalformed},
		{"delta without keyframe", []byte{1, 0, 1, 0, 1, 0, 0, 0, 0, 0}, ErrKeyframeMismatch},
	}
	for _, c := range cases {
		if _, err := NewDecoder().Decode(1, c.frame); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}

	d := NewDecoder()
	if _, err := d.Decode(1, good); err != nil {
		t.Fatal(err)
	}
	delta := func(body ...byte) []byte { return append([]byte{1, 0, 1, 0, 1, 0, 0, 0, 0}, body...) }
	deltaCases := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"unknown field bit", delta(0x80, 0x80, 0x80, 0x01), ErrMalformed}, // bit 21
		{"negative result", delta(0x01, 0x81, 0x05), ErrMalformed},         // uptime 300 − 321
		{"huge difference", delta(0x01, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrMalformed},
		{"loss over 1000", delta(0x80, 0x02, 0xd2, 0x0f), ErrMalformed}, // bit 8, +1001
		{"missing field", delta(0x01), ErrTruncated},
		{"missing bitmap", delta(), ErrTruncated},
	}
	for _, c := range deltaCases {
		if _, err := d.Decode(1, c.frame); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// None of the refused frames changed the state.
	next := delta(0x01, 0x02) // uptime +1
	f, err := d.Decode(1, next)
	if err != nil || f.Values.Uptime != 301 {
		t.Fatalf("after hostile frames: %+v, %v", f.Values, err)
	}
}

func TestZigzag(t *testing.T) {
	for _, d := range []int64{0, -1, 1, -2, 2, math.MaxUint32, -math.MaxUint32, math.MaxInt64, math.MinInt64} {
		if got := unzigzag(zigzag(d)); got != d {
			t.Fatalf("zigzag round trip %d → %d", d, got)
		}
	}
	if zigzag(-1) != 1 || zigzag(1) != 2 || zigzag(-2) != 3 {
		t.Fatal("zigzag mapping differs from the protobuf definition")
	}
}

func BenchmarkEncode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	e := NewEncoder(EncoderConfig{})
	v := randomValues(r, false)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v.Uptime++
		v.MessagesRx += 7
		_ = e.Encode(t0, uint32(i), v, false)
	}
}

func BenchmarkDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	e := NewEncoder(EncoderConfig{KeyframeEvery: 1 << 30, KeyframeInterval: time.Hour})
	v := randomValues(r, false)
	d := NewDecoder()
	_, _ = d.Decode(1, e.Encode(t0, 0, v, false))
	frames := make([][]byte, 1024)
	for i := range frames {
		v = step(r, v)
		frames[i] = e.Encode(t0, 0, v, false)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(frames) == 0 {
			d = NewDecoder()
			_, _ = d.Decode(1, NewEncoder(EncoderConfig{}).Encode(t0, 0, v, false))
		}
		_, _ = d.Decode(1, frames[i%len(frames)])
	}
}
