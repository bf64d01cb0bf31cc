package status

import "testing"

func TestChangeSteps(t *testing.T) {
	base := Metrics{FreeMemory: 30_000, LatencyUs: 5_000, LossPermille: 10, RSSI: -60, OTAProgress: 40,
		Nodes: 9, Connections: 2, Uptime: 100, MessagesTx: 5, Throughput: 300}
	for _, tc := range []struct {
		name string
		edit func(*Metrics)
		want bool
	}{
		{"nothing", func(*Metrics) {}, false},
		{"uptime, counters, throughput", func(m *Metrics) { m.Uptime += 30; m.MessagesTx += 900; m.MessagesRx++; m.Throughput = 9000 }, false},
		{"memory under the step", func(m *Metrics) { m.FreeMemory -= 511 }, false},
		{"memory down a step", func(m *Metrics) { m.FreeMemory -= 512 }, true},
		{"memory up a step", func(m *Metrics) { m.FreeMemory += 512 }, true},
		{"latency under the step", func(m *Metrics) { m.LatencyUs += 99_999 }, false},
		{"latency a step", func(m *Metrics) { m.LatencyUs += 100_000 }, true},
		{"loss a step", func(m *Metrics) { m.LossPermille = 60 }, true},
		{"rssi 4 dB", func(m *Metrics) { m.RSSI = -64 }, false},
		{"rssi 5 dB down", func(m *Metrics) { m.RSSI = -65 }, true},
		{"rssi 5 dB up", func(m *Metrics) { m.RSSI = -55 }, true},
		{"ota progress 4", func(m *Metrics) { m.OTAProgress = 44 }, false},
		{"ota progress 5", func(m *Metrics) { m.OTAProgress = 45 }, true},
		{"node count", func(m *Metrics) { m.Nodes-- }, true},
		{"connections", func(m *Metrics) { m.Connections++ }, true},
		{"alert bit", func(m *Metrics) { m.Alerts = FlagLowMemory }, true},
		{"device status", func(m *Metrics) { m.DeviceStatus = 3 }, true},
		{"ota state", func(m *Metrics) { m.OTAState = OTADownloading }, true},
		{"firmware", func(m *Metrics) { m.FirmwareHash = 7 }, true},
	} {
		now := base
		tc.edit(&now)
		if got := (ChangeSteps{}).Changed(&base, &now); got != tc.want {
			t.Errorf("%s: changed %v, want %v", tc.name, got, tc.want)
		}
	}
	// A step of its own replaces the default.
	coarse := ChangeSteps{FreeMemory: 4096}
	now := base
	now.FreeMemory -= 4000
	if coarse.Changed(&base, &now) {
		t.Error("4000 bytes counted with a 4096-byte step")
	}
}
