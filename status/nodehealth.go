package status

// NodeHealth scores one node as Health does, without scoring the others
// (the history takes a node's health with each of its samples); false
// when the node has not reported.
func (c *Collector) NodeHealth(id uint32) (NodeHealth, bool) {
	e, ok := c.model.nodes[id]
	if !ok || e.FirstSeen.IsZero() {
		return NodeHealth{}, false
	}
	n := e.Metrics.Alerts.Count()
	if c.alerts != nil {
		n = c.alerts.ActiveCount(id)
	}
	return c.model.cfg.Health.score(&e.NodeState, n), true
}
