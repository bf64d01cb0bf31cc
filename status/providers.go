package status

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"
)

// RuntimeFreeMemory is a Providers.FreeMemory for a node running on Linux
// as a Go process: with a memory limit (GOMEMLIMIT) the room left under
// it, else the system's available memory (MemAvailable of /proc/meminfo).
// Values saturate at 4 GiB − 1; 0 means it could not be read.
func RuntimeFreeMemory(time.Time) uint32 {
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 && s[1].Value.Kind() == metrics.KindUint64 {
			used := int64(s[0].Value.Uint64() - s[1].Value.Uint64())
			return saturate32(max(limit-used, 1))
		}
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return memAvailable(data)
}

// memAvailable reads "MemAvailable: N kB" from /proc/meminfo text.
func memAvailable(data []byte) uint32 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "MemAvailable:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil || kb < 0 {
				return 0
			}
			return saturate32(max(kb*1024, 1))
		}
	}
	return 0
}

func saturate32(v int64) uint32 { return uint32(min(v, math.MaxUint32)) }

// MemoryModel is a free-heap model for simulated nodes: Start bytes free at
// Boot, falling by LeakPerHour (a leak; 0 for none), never below Floor,
// plus a deterministic ripple of ±Ripple bytes with period RipplePeriod (the
// heap a busy node's buffers take and give back). Use Free as
// Providers.FreeMemory.
type MemoryModel struct {
	Boot         time.Time
	Start        uint32
	LeakPerHour  uint32
	Floor        uint32
	Ripple       uint32
	RipplePeriod time.Duration
}

// Free is the free heap at now.
func (m MemoryModel) Free(now time.Time) uint32 {
	up := now.Sub(m.Boot).Hours()
	free := float64(m.Start) - up*float64(m.LeakPerHour)
	if m.Ripple > 0 && m.RipplePeriod > 0 {
		phase := 2 * math.Pi * float64(now.Sub(m.Boot)) / float64(m.RipplePeriod)
		free += float64(m.Ripple) * math.Sin(phase)
	}
	free = math.Max(free, float64(m.Floor))
	return uint32(math.Max(1, math.Min(free, math.MaxUint32)))
}
