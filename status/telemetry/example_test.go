package telemetry_test

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/status/telemetry"
)

func Example() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	enc := telemetry.NewEncoder(telemetry.EncoderConfig{KeyframeEvery: 10})
	dec := telemetry.NewDecoder()

	v := telemetry.Values{Uptime: 60, FreeMemory: 38_000, MessagesRx: 1200, Connections: 2, RSSI: -67}
	for i := 0; i < 3; i++ {
		frame := enc.Encode(start.Add(time.Duration(i)*30*time.Second), uint32(i), v, false)
		f, err := dec.Decode(3907768579, frame)
		if err != nil {
			panic(err)
		}
		fmt.Printf("keyframe=%v %d bytes: uptime %d rx %d\n", f.Keyframe, len(frame), f.Values.Uptime, f.Values.MessagesRx)
		v.Uptime += 30
		v.MessagesRx += 240
	}
	// Output:
	// keyframe=true 33 bytes: uptime 60 rx 1200
	// keyframe=false 13 bytes: uptime 90 rx 1440
	// keyframe=false 13 bytes: uptime 120 rx 1680
}
