package telemetry

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// FuzzDecode feeds hostile frames to a decoder that has already seen a
// keyframe, so both keyframe and delta parsing are reached. A frame either
// decodes or fails with one of the package's errors; it never panics, and
// a decoded frame's values survive a fresh encode/decode round trip.
func FuzzDecode(f *testing.F) {
	e := NewEncoder(EncoderConfig{})
	base := Values{Uptime: 300, FreeMemory: 40000, MessagesRx: 1000, Nodes: 5, Connections: 2, RSSI: -60}
	key := e.Encode(t0, 1, base, false)
	base.Uptime = 330
	base.Alerts = 3
	f.Add(key)
	f.Add(e.Encode(t0, 2, base, false))
	f.Add([]byte{1, 0, 1, 0, 1, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, frame []byte) {
		d := NewDecoder()
		if _, err := d.Decode(1, key); err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode(1, frame)
		if err != nil {
			for _, known := range []error{ErrTruncated, ErrTooLarge, ErrVersion, ErrMalformed, ErrKeyframeMismatch, ErrStale} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("error outside the package's set: %v", err)
		}
		if len(frame) > MaxFrameSize {
			t.Fatalf("accepted a %d-byte frame", len(frame))
		}
		again, err := NewDecoder().Decode(1, NewEncoder(EncoderConfig{}).Encode(t0, 0, got.Values, false))
		if err != nil || again.Values != got.Values {
			t.Fatalf("decoded values %+v do not round-trip: %+v, %v", got.Values, again.Values, err)
		}
	})
}

// FuzzEncodeSize turns the input into a sequence of value sets and checks
// that every frame stays within MaxFrameSize and decodes to exactly what
// was encoded.
func FuzzEncodeSize(f *testing.F) {
	f.Add([]byte{}, uint8(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		e := NewEncoder(EncoderConfig{KeyframeEvery: int(k)})
		d := NewDecoder()
		next := func() uint32 {
			if len(data) < 4 {
				data = nil
				return 0
			}
			u := binary.LittleEndian.Uint32(data)
			data = data[4:]
			return u
		}
		for i := 0; i < 64 && (i == 0 || len(data) > 0); i++ {
			v := Values{
				Uptime: next(), FreeMemory: next(), MessagesRx: next(), MessagesTx: next(),
				MessagesDropped: next(), Latency: next(), Throughput: next(),
				Nodes: uint16(next()), LossPermille: uint16(next() % 1001), Interval: uint16(next()),
			}
			w := next()
			v.Connections, v.RSSI, v.WiFi, v.Alerts = uint8(w), int8(w>>8), uint8(w>>16), uint8(w>>24)
			w = next()
			v.DeviceStatus, v.OTAState, v.OTAProgress = uint8(w), uint8(w>>8), uint8(w>>16)
			v.FirmwareHash = next()
			frame := e.Encode(t0.Add(time.Duration(i)*time.Second), next(), v, i%3 == 0)
			if len(frame) > MaxFrameSize {
				t.Fatalf("frame %d is %d bytes", i, len(frame))
			}
			got, err := d.Decode(1, frame)
			if err != nil || got.Values != v {
				t.Fatalf("frame %d: %+v, %v; want %+v", i, got.Values, err, v)
			}
		}
	})
}
