package alert_test

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/alert"
)

func ExampleEngine() {
	e := alert.NewEngine(alert.Config{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	uptime := uint32(600)
	for _, free := range []uint32{40_000, 9_000, 4_000, 11_000, 13_000, 13_000} {
		now = now.Add(30 * time.Second)
		uptime += 30
		for _, c := range e.Observe(now, 42, alert.Sample{Uptime: uptime, FreeMemory: free}) {
			fmt.Println(c.Transition, c.Alert.Type(), c.Alert.Severity, c.Alert.Value)
		}
	}
	// Output:
	// raised low_memory warning 9000
	// updated low_memory critical 4000
	// cleared low_memory critical 13000
}
