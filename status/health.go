package status

import (
	"math"
	"time"
)

// HealthConfig sets the health score formula. Zero fields take the
// defaults.
//
// A node's score is 0 while it is offline. Otherwise it is
//
//	100 · (wM·M + wL·L + wP·P + wA·A) / (wM + wL + wP + wA)
//
// where each component is in [0, 1]:
//
//	M memory:  0 at or below MemoryLow free bytes, 1 at or above MemoryGood, linear between
//	L latency: 1 at or below LatencyGood, 0 at or above LatencyBad, linear between
//	P loss:    1 at or below LossGood permille, 0 at or above LossBad, linear between
//	A alerts:  1 − AlertPenalty per active alert, at least 0
//
// and an unknown value (free memory or latency 0) scores 1. The mesh score
// is the mean of the scores of the nodes that have reported at least once
// (100 when none has), rounded to the nearest integer.
type HealthConfig struct {
	MemoryWeight, LatencyWeight, LossWeight, AlertWeight float64 // default 0.3, 0.25, 0.25, 0.2
	MemoryLow, MemoryGood                                uint32  // bytes; default 10 KB, 32 KB
	LatencyGood, LatencyBad                              time.Duration
	LossGood, LossBad                                    uint16  // permille; default 10, 200
	AlertPenalty                                         float64 // default 0.25
}

func (c HealthConfig) withDefaults() HealthConfig {
	if c.MemoryWeight == 0 && c.LatencyWeight == 0 && c.LossWeight == 0 && c.AlertWeight == 0 {
		c.MemoryWeight, c.LatencyWeight, c.LossWeight, c.AlertWeight = 0.3, 0.25, 0.25, 0.2
	}
	if c.MemoryLow == 0 {
		c.MemoryLow = 10 * 1024
	}
	if c.MemoryGood <= c.MemoryLow {
		c.MemoryGood = max(32*1024, c.MemoryLow+1)
	}
	if c.LatencyGood <= 0 {
		c.LatencyGood = 100 * time.Millisecond
	}
	if c.LatencyBad <= c.LatencyGood {
		c.LatencyBad = max(time.Second, c.LatencyGood+time.Millisecond)
	}
	if c.LossGood == 0 {
		c.LossGood = 10
	}
	if c.LossBad <= c.LossGood {
		c.LossBad = max(200, c.LossGood+1)
	}
	if c.AlertPenalty <= 0 {
		c.AlertPenalty = 0.25
	}
	return c
}

// NodeHealth is one node's score and its components.
type NodeHealth struct {
	Node    uint32  `json:"node_id"`
	Score   int     `json:"score"`
	Memory  float64 `json:"memory"`
	Latency float64 `json:"latency"`
	Loss    float64 `json:"loss"`
	Alerts  float64 `json:"alerts"`
}

// Health is the mesh-wide picture.
type Health struct {
	Score     int          `json:"score"`
	NodeCount int          `json:"node_count"` // nodes in the layout, or known if no layout
	Known     int          `json:"known"`      // nodes the model has a state for
	Reported  int          `json:"reported"`   // nodes that sent status data at least once
	Online    int          `json:"online"`
	MaxHops   int          `json:"max_hops"`
	Nodes     []NodeHealth `json:"nodes"` // reported nodes, by id
}

// ramp is 0 at bad, 1 at good, linear between (either order).
func ramp(x, bad, good float64) float64 {
	if good > bad {
		return math.Min(1, math.Max(0, (x-bad)/(good-bad)))
	}
	return math.Min(1, math.Max(0, (bad-x)/(bad-good)))
}

// score computes a node's health from its state; alerts is its number of
// active alerts.
func (c HealthConfig) score(s *NodeState, alerts int) NodeHealth {
	c = c.withDefaults()
	h := NodeHealth{Node: s.ID, Memory: 1, Latency: 1}
	mt := &s.Metrics
	if mt.FreeMemory != 0 {
		h.Memory = ramp(float64(mt.FreeMemory), float64(c.MemoryLow), float64(c.MemoryGood))
	}
	if mt.LatencyUs != 0 {
		h.Latency = ramp(float64(mt.LatencyUs), float64(c.LatencyBad.Microseconds()), float64(c.LatencyGood.Microseconds()))
	}
	h.Loss = ramp(float64(mt.LossPermille), float64(c.LossBad), float64(c.LossGood))
	h.Alerts = math.Max(0, 1-c.AlertPenalty*float64(alerts))
	if !s.Online {
		return h
	}
	w := c.MemoryWeight + c.LatencyWeight + c.LossWeight + c.AlertWeight
	sum := c.MemoryWeight*h.Memory + c.LatencyWeight*h.Latency + c.LossWeight*h.Loss + c.AlertWeight*h.Alerts
	h.Score = int(math.Round(100 * sum / w))
	return h
}

// health scores every node that has reported and the mesh. alerts gives a
// node's active alert count; nil counts the node's own alert flags.
func (m *Model) health(alerts func(node uint32) int) Health {
	h := Health{NodeCount: m.tree.Size(), MaxHops: m.MaxHops()}
	if !m.haveTree {
		h.NodeCount = len(m.nodes)
	}
	total := 0
	for _, id := range m.ids() {
		e := m.nodes[id]
		h.Known++
		if e.Online {
			h.Online++
		}
		if e.FirstSeen.IsZero() {
			continue
		}
		h.Reported++
		n := e.Metrics.Alerts.Count()
		if alerts != nil {
			n = alerts(id)
		}
		nh := m.cfg.Health.score(&e.NodeState, n)
		total += nh.Score
		h.Nodes = append(h.Nodes, nh)
	}
	h.Score = 100
	if h.Reported > 0 {
		h.Score = int(math.Round(float64(total) / float64(h.Reported)))
	}
	return h
}
