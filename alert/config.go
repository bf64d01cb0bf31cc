package alert

import "time"

// AnomalyConfig tunes the rate-of-change rules. Zero fields take the
// defaults.
type AnomalyConfig struct {
	Disabled     bool
	Alpha        float64 // EWMA smoothing, default 0.2
	K            float64 // band half-width in standard deviations, default 4
	Warmup       int     // samples before judging, default 8
	ClearSamples int     // samples back inside the band to clear, default 3
	// Floors: deviations smaller than these never count, however quiet
	// the baseline (default 0.5 drops/s and 50 bytes/s).
	DropRateFloor    float64
	MemoryTrendFloor float64
}

// Config holds the rules' thresholds. Each numeric rule raises when the
// value crosses the first threshold and clears only once it is back
// beyond the second (hysteresis) for ClearSamples samples in a row. Zero
// fields take the defaults, which follow the alert flag table.
type Config struct {
	LowMemory, LowMemoryClear, LowMemoryCritical uint32        // bytes; default 10 KB, 12 KB, 5 KB
	HighLatency, HighLatencyClear                time.Duration // default 500 ms, 400 ms
	PacketLoss, PacketLossClear                  uint16        // permille; default 100, 50
	PacketLossCritical                           uint16        // default 250
	WeakRSSI, WeakRSSIClear                      int8          // dBm; default -80, -75
	// WeakWiFi and WeakWiFiClear apply to the 0..100 signal when a node
	// reports no RSSI (stock packages); default 40, 50 (-80 and -75 dBm
	// on the 2·(dBm+100) scale).
	WeakWiFi, WeakWiFiClear uint8
	// RebootCount restarts within RebootWindow are a reboot loop
	// (default 3 in 10 minutes).
	RebootCount  int
	RebootWindow time.Duration
	// IgnoreNodeFlags: judge by values only, not by the alert bits the
	// nodes set themselves.
	IgnoreNodeFlags bool
	RaiseSamples    int // bad samples in a row to raise, default 1
	ClearSamples    int // good samples in a row to clear, default 2
	// UpdateRatio: an active alert is reported as updated when its
	// severity changes or its value worsens by this fraction since the
	// last report (default 0.2).
	UpdateRatio float64
	RecentSize  int // cleared alerts kept, default 100
	Anomaly     AnomalyConfig
}

func (c Config) withDefaults() Config {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.LowMemory, 10*1024)
	def(&c.LowMemoryClear, max(12*1024, c.LowMemory))
	def(&c.LowMemoryCritical, min(5*1024, c.LowMemory))
	if c.HighLatency <= 0 {
		c.HighLatency = 500 * time.Millisecond
	}
	if c.HighLatencyClear <= 0 {
		c.HighLatencyClear = min(400*time.Millisecond, c.HighLatency)
	}
	if c.PacketLoss == 0 {
		c.PacketLoss = 100
	}
	if c.PacketLossClear == 0 {
		c.PacketLossClear = min(50, c.PacketLoss)
	}
	if c.PacketLossCritical == 0 {
		c.PacketLossCritical = max(250, c.PacketLoss)
	}
	if c.WeakRSSI == 0 {
		c.WeakRSSI = -80
	}
	if c.WeakRSSIClear == 0 {
		c.WeakRSSIClear = max(-75, c.WeakRSSI)
	}
	if c.WeakWiFi == 0 {
		c.WeakWiFi = 40
	}
	if c.WeakWiFiClear == 0 {
		c.WeakWiFiClear = max(50, c.WeakWiFi)
	}
	if c.RebootCount <= 0 {
		c.RebootCount = 3
	}
	if c.RebootWindow <= 0 {
		c.RebootWindow = 10 * time.Minute
	}
	if c.RaiseSamples <= 0 {
		c.RaiseSamples = 1
	}
	if c.ClearSamples <= 0 {
		c.ClearSamples = 2
	}
	if c.UpdateRatio <= 0 {
		c.UpdateRatio = 0.2
	}
	if c.RecentSize <= 0 {
		c.RecentSize = 100
	}
	a := &c.Anomaly
	if a.Alpha <= 0 || a.Alpha > 1 {
		a.Alpha = 0.2
	}
	if a.K <= 0 {
		a.K = 4
	}
	if a.Warmup <= 0 {
		a.Warmup = 8
	}
	if a.ClearSamples <= 0 {
		a.ClearSamples = 3
	}
	if a.DropRateFloor <= 0 {
		a.DropRateFloor = 0.5
	}
	if a.MemoryTrendFloor <= 0 {
		a.MemoryTrendFloor = 50
	}
	return c
}
