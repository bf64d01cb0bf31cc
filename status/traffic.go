package status

import (
	"slices"
	"time"
)

// typeTraffic is what one package type accounts for.
type typeTraffic struct {
	Type     int    `json:"type"`
	Packages uint64 `json:"packages"`
	Bytes    uint64 `json:"bytes"`
}

// Traffic counts the packages a plugin originated, by type, in bytes on
// the first link: the JSON plus its NUL terminator. A Reporter's count
// includes the TIME_DELAY (3) requests it has the node send to measure
// latency (the replies come from the collector's node). Relays multiply
// the figures by the hops a package crosses; a simulator that wants
// link-level figures counts every transmission whose type passes
// IsStatusType (and the TIME_DELAY messages) instead.
type Traffic struct {
	Packages uint64 `json:"packages"`
	Bytes    uint64 `json:"bytes"`
	Failed   uint64 `json:"failed"` // sends the node refused (no route)
	byType   []typeTraffic
}

func (t *Traffic) add(typ, msgLen int) {
	n := uint64(msgLen) + 1
	t.Packages++
	t.Bytes += n
	i, found := slices.BinarySearchFunc(t.byType, typ, func(e typeTraffic, typ int) int { return e.Type - typ })
	if !found {
		t.byType = slices.Insert(t.byType, i, typeTraffic{Type: typ})
	}
	t.byType[i].Packages++
	t.byType[i].Bytes += n
}

// perType lists the counts per package type, by type.
func (t *Traffic) perType() []typeTraffic { return slices.Clone(t.byType) }

// Add sums two counts (e.g. every node's Reporter in a simulation).
func (t Traffic) Add(o Traffic) Traffic {
	out := Traffic{Packages: t.Packages + o.Packages, Bytes: t.Bytes + o.Bytes, Failed: t.Failed + o.Failed}
	out.byType = slices.Clone(t.byType)
	for _, e := range o.byType {
		i, found := slices.BinarySearchFunc(out.byType, e.Type, func(x typeTraffic, typ int) int { return x.Type - typ })
		if !found {
			out.byType = slices.Insert(out.byType, i, typeTraffic{Type: e.Type})
		}
		out.byType[i].Packages += e.Packages
		out.byType[i].Bytes += e.Bytes
	}
	return out
}

// LinkShare is the fraction of a link's capacity that bytes sent over
// elapsed use: bytes·8 / (elapsed · bitsPerSecond). Zero for an empty
// interval or capacity.
func LinkShare(bytes uint64, elapsed time.Duration, bitsPerSecond float64) float64 {
	if elapsed <= 0 || bitsPerSecond <= 0 {
		return 0
	}
	return float64(bytes) * 8 / (elapsed.Seconds() * bitsPerSecond)
}
