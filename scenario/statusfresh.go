package scenario

import (
	"math"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/status"
)

// freshStep is how often the status scenario compares what the root knows
// with what the nodes are.
const freshStep = 100 * time.Millisecond

// freshness measures how long the root's knowledge of a node lags a
// change: every freshStep, for every counted reporting node, it compares
// the node's real values (its device and its mesh state, not what its
// reporter says) with the root's model, to within status.ChangeSteps.
// While they differ the root is stale about the node; an episode runs
// from the last sample at which they agreed (so it errs long by up to one
// step) to the first at which they agree again. Its durations are the
// freshness figures.
//
// The values compared are the ones change-driven reporting promises to
// follow: free memory (to 512 bytes), RSSI (5 dB), node and connection
// counts and firmware. Uptime, the message counters and throughput,
// which change all the time, travel with the regular frames: their age
// is the data age (StatusReport.DataAgeP99S), one regular interval at
// most. A heartbeat that says nothing new cannot make a node fresh here,
// and a suppressed change cannot hide: the node's own state is the
// reference.
type freshness struct {
	steps      status.ChangeSteps
	staleSince map[uint32]time.Time
	lastAgree  map[uint32]time.Time
	episodes   []float64
}

func newFreshness() *freshness {
	return &freshness{staleSince: map[uint32]time.Time{}, lastAgree: map[uint32]time.Time{}}
}

// truth is what node id really is at now, in the compared fields; false
// while the node is not running.
func (sm *scenarioMesh) truth(id uint32, now time.Time) (status.Metrics, bool) {
	nd := sm.net.Node(id)
	mn, ok := nd.Machine().(*meteredNode)
	if !ok || mn == nil {
		return status.Metrics{}, false
	}
	d := sm.dev[id]
	return status.Metrics{
		FreeMemory:   d.free(now),
		RSSI:         d.rssi,
		FirmwareHash: status.FirmwareHash(d.firmware[0], d.firmware[1]),
		Nodes:        uint16(min(len(mn.NodeList(false)), math.MaxUint16)),
		Connections:  uint8(min(mn.Stats().Connections, math.MaxUint8)),
	}, true
}

// sample compares every counted reporting node at now.
func (f *freshness) sample(sm *scenarioMesh, now time.Time) {
	model := sm.collector.Model()
	for _, nd := range sm.nodes[1:] {
		id := nd.ID()
		if sm.dev[id].stock {
			continue
		}
		if sm.excluded[id] {
			// Away by a fault: the offline rule speaks for it.
			delete(f.staleSince, id)
			f.lastAgree[id] = now
			continue
		}
		real, up := sm.truth(id, now)
		if !up {
			continue
		}
		st, known := model.Node(id)
		root := status.Metrics{FreeMemory: st.Metrics.FreeMemory, RSSI: st.Metrics.RSSI, FirmwareHash: st.Metrics.FirmwareHash,
			Nodes: st.Metrics.Nodes, Connections: st.Metrics.Connections}
		since, open := f.staleSince[id]
		if !known || f.steps.Changed(&root, &real) {
			if !open {
				agreed, ok := f.lastAgree[id]
				if !ok {
					agreed = now
				}
				f.staleSince[id] = agreed
			}
			continue
		}
		if open {
			f.episodes = append(f.episodes, now.Sub(since).Seconds())
			delete(f.staleSince, id)
		}
		f.lastAgree[id] = now
	}
}

// finish closes the episodes still open at now (counted as long as they
// have lasted) and returns the durations, sorted.
func (f *freshness) finish(now time.Time) []float64 {
	for id, since := range f.staleSince {
		f.episodes = append(f.episodes, now.Sub(since).Seconds())
		delete(f.staleSince, id)
	}
	slices.Sort(f.episodes)
	return f.episodes
}

// percentile is the nearest-rank p-quantile of sorted values (0 if none).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[max(0, int(math.Ceil(p*float64(len(sorted))))-1)]
}
