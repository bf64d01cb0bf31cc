// Package esp_test checks the ESP-side C++ library (this directory) from
// Go: its wire output against the Go codecs, and (in gateway) its nodes in
// a real mesh with the gateway.
package esp_test

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// frames is the running esp/host/frames program.
type frames struct {
	t   *testing.T
	in  io.Writer
	out *bufio.Scanner
}

func startFrames(t *testing.T) *frames {
	t.Helper()
	cmd := exec.Command(cpppeer.BuildFrames(t))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return &frames{t: t, in: in, out: bufio.NewScanner(out)}
}

func (f *frames) ask(format string, args ...any) string {
	f.t.Helper()
	fmt.Fprintf(f.in, format+"\n", args...)
	if !f.out.Scan() {
		f.t.Fatalf("frames: no answer to %q: %v", fmt.Sprintf(format, args...), f.out.Err())
	}
	return f.out.Text()
}

func fieldsOf(v telemetry.Values) []uint64 {
	return []uint64{uint64(v.Uptime), uint64(v.FreeMemory), uint64(v.MessagesRx), uint64(v.MessagesTx), uint64(v.MessagesDropped),
		uint64(v.Latency), uint64(v.Throughput), uint64(v.Nodes), uint64(v.LossPermille), uint64(v.Interval),
		uint64(v.Connections), uint64(uint8(v.RSSI)), uint64(v.WiFi), uint64(v.Alerts), uint64(v.DeviceStatus),
		uint64(v.OTAState), uint64(v.OTAProgress), uint64(v.FirmwareHash)}
}

// The library's encoder writes the Go encoder's bytes for the same values
// at the same times (status/PROTOCOL.md §2.1 and status/PROTOCOL.md §2.2): keyframes, deltas,
// a keyframe every 10 frames and every 5 minutes, on request and where a
// delta would not be smaller, priority frames, extreme values.
func TestFramesAreTheGoEncodersBytes(t *testing.T) {
	f := startFrames(t)
	enc := telemetry.NewEncoder(telemetry.EncoderConfig{})
	dec := telemetry.NewDecoder()
	rng := rand.New(rand.NewPCG(1, 2))
	v := telemetry.Values{Uptime: 1, FreeMemory: 40960, Nodes: 3, Interval: 30, Connections: 2, RSSI: -67, WiFi: 66, FirmwareHash: 0xdeadbeef}
	var ms uint32
	keyframes := 0
	for i := range 400 {
		ms += uint32(rng.IntN(40_000))
		if i%97 == 96 {
			ms += 6 * 60 * 1000 // past the keyframe interval
		}
		switch rng.IntN(6) {
		case 0: // a small drift
			v.Uptime += 30
			v.MessagesRx += uint32(rng.IntN(100))
			v.FreeMemory -= uint32(rng.IntN(200))
		case 1: // anything, extremes included
			v = telemetry.Values{Uptime: rng.Uint32(), FreeMemory: rng.Uint32(), MessagesRx: ^uint32(0), MessagesTx: rng.Uint32(),
				MessagesDropped: rng.Uint32(), Latency: rng.Uint32(), Throughput: rng.Uint32(), Nodes: uint16(rng.Uint32()),
				LossPermille: uint16(rng.IntN(1001)), Interval: uint16(rng.Uint32()), Connections: uint8(rng.Uint32()),
				RSSI: int8(rng.Uint32()), WiFi: uint8(rng.IntN(101)), Alerts: uint8(rng.Uint32()), DeviceStatus: uint8(rng.Uint32()),
				OTAState: uint8(rng.IntN(7)), OTAProgress: uint8(rng.IntN(101)), FirmwareHash: rng.Uint32()}
		case 2: // counters going back (a wrap): negative deltas
			v.MessagesTx -= uint32(rng.IntN(1000))
			v.RSSI = -int8(rng.IntN(100))
		case 3:
			enc.RequestKeyframe()
			if got := f.ask("keyframe"); got != "ok" {
				t.Fatalf("keyframe: %s", got)
			}
		}
		priority := rng.IntN(5) == 0
		ts := rng.Uint32()
		want := enc.Encode(time.UnixMilli(int64(ms)), ts, v, priority)
		args := []string{fmt.Sprint(ms), fmt.Sprint(ts), map[bool]string{true: "1", false: "0"}[priority]}
		for _, x := range fieldsOf(v) {
			args = append(args, fmt.Sprint(x))
		}
		got := f.ask("frame %s", strings.Join(args, " "))
		if got != hex.EncodeToString(want) {
			t.Fatalf("frame %d: C++ %s, Go %x (values %+v)", i, got, want, v)
		}
		fr, err := dec.Decode(7, want)
		if err != nil || fr.Values != v {
			t.Fatalf("frame %d decodes to %+v, %v; want %+v", i, fr.Values, err, v)
		}
		if fr.Keyframe {
			keyframes++
		}
	}
	if keyframes < 40 || keyframes > 300 {
		t.Fatalf("%d keyframes in 400 frames: the sequence did not exercise both kinds", keyframes)
	}
}

// The firmware hash and the spread of query answers are the Go side's
// (status.FirmwareHash; status/PROTOCOL.md §3: FNV-1a 64 of node and query
// id, modulo the spread in nanoseconds).
func TestHashesAreTheGoSides(t *testing.T) {
	f := startFrames(t)
	for _, c := range [][2]string{{"3.0.1", "9e107d9d372bb6826bd81d3542a419d6"}, {"", ""}, {"1.0.0", ""}, {"", "abc"}} {
		arg := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		if got, want := f.ask("hash %s %s", arg(c[0]), arg(c[1])), fmt.Sprint(status.FirmwareHash(c[0], c[1])); got != want {
			t.Errorf("firmware hash of %q: C++ %s, Go %s", c, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		node, qid, spread := rng.Uint32(), rng.Uint32(), uint32(1+rng.IntN(10_000))
		h := fnv.New64a()
		var b [8]byte
		binary.LittleEndian.PutUint32(b[:4], node)
		binary.LittleEndian.PutUint32(b[4:], qid)
		h.Write(b[:])
		want := time.Duration(h.Sum64() % uint64(time.Duration(spread)*time.Millisecond)).Milliseconds()
		if got := f.ask("delay %d %d %d", node, qid, spread); got != fmt.Sprint(want) {
			t.Fatalf("answer delay of node %d, query %d, spread %d ms: C++ %s, Go %d", node, qid, spread, got, want)
		}
	}
}
