package sim

import (
	"fmt"
	"strings"

	"github.com/meshfleet/meshfleet/mesh"
)

// Topology names a shape the builders can wire.
type Topology string

// The topologies Build knows. In each, the joining node is the station
// side of its connection, as a node that found its parent's soft-AP.
const (
	// TopologyRandom is a random tree: node i joins a uniformly chosen
	// earlier node that still has room for a child (Model.MaxConn).
	TopologyRandom Topology = "random"
	// TopologyChain is a line: node i joins node i-1.
	TopologyChain Topology = "chain"
	// TopologyStar has every node join node 0, ignoring MaxConn.
	TopologyStar Topology = "star"
	// TopologyTree is a balanced tree in breadth-first order: node i joins
	// node (i-1)/fanOut.
	TopologyTree Topology = "tree"
)

// Topologies lists the names ParseTopology accepts.
func Topologies() []string { return []string{"random", "chain", "star", "tree"} }

// ParseTopology checks a topology name (case-insensitive).
func ParseTopology(s string) (Topology, error) {
	t := Topology(strings.ToLower(s))
	switch t {
	case TopologyRandom, TopologyChain, TopologyStar, TopologyTree:
		return t, nil
	}
	return "", fmt.Errorf("sim: unknown topology %q (want one of %s)", s, strings.Join(Topologies(), ", "))
}

// AddMeshNodes adds count mesh nodes with distinct random non-zero ids and
// random clock starts (unsynchronised ESP clocks), stock timing and the
// given plugins (nil for none).
func (n *Network) AddMeshNodes(count int, plugins func(*Node) []mesh.Plugin) ([]*Node, error) {
	nodes := make([]*Node, 0, count)
	for range count {
		id := n.freeID()
		nd, err := n.AddNode(NodeSpec{
			Config:  mesh.Config{ID: id, ClockStart: n.rng.Uint32()},
			Plugins: plugins,
		})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, nd)
	}
	return nodes, nil
}

// freeID draws a random node id not used in the network.
func (n *Network) freeID() uint32 {
	for {
		id := n.rng.Uint32()
		if _, used := n.byID[id]; id != 0 && !used {
			return id
		}
	}
}

// Build wires nodes in topology t. fanOut is the children limit for random
// and tree (0 means the model's MaxConn, or 4 if that is 0 too).
func (n *Network) Build(t Topology, nodes []*Node, fanOut int) error {
	if fanOut <= 0 {
		fanOut = n.model.MaxConn
	}
	if fanOut <= 0 {
		fanOut = 4
	}
	switch t {
	case TopologyRandom:
		return n.RandomTree(nodes, fanOut)
	case TopologyChain:
		return n.Chain(nodes)
	case TopologyStar:
		return n.Star(nodes)
	case TopologyTree:
		return n.Tree(nodes, fanOut, 0)
	}
	return fmt.Errorf("sim: unknown topology %q", t)
}

// Chain connects nodes[i] (station) to nodes[i-1].
func (n *Network) Chain(nodes []*Node) error {
	for i := 1; i < len(nodes); i++ {
		if err := n.Connect(nodes[i], nodes[i-1]); err != nil {
			return err
		}
	}
	return nil
}

// Star connects every other node (station) to nodes[0].
func (n *Network) Star(nodes []*Node) error {
	for i := 1; i < len(nodes); i++ {
		if err := n.Connect(nodes[i], nodes[0]); err != nil {
			return err
		}
	}
	return nil
}

// Tree connects nodes as a balanced tree in breadth-first order, each node
// with at most fanOut children. With maxDepth > 0 (hops from nodes[0]) the
// tree must fit in that depth; a fanOut of 0 then picks the smallest
// fan-out that fits.
func (n *Network) Tree(nodes []*Node, fanOut, maxDepth int) error {
	if fanOut <= 0 {
		if maxDepth <= 0 {
			return fmt.Errorf("sim: tree needs a fan-out or a depth limit")
		}
		fanOut = 1
		for treeDepth(len(nodes), fanOut) > maxDepth {
			fanOut++
		}
	}
	if maxDepth > 0 {
		if d := treeDepth(len(nodes), fanOut); d > maxDepth {
			return fmt.Errorf("sim: %d nodes with fan-out %d need depth %d, limit %d", len(nodes), fanOut, d, maxDepth)
		}
	}
	for i := 1; i < len(nodes); i++ {
		if err := n.Connect(nodes[i], nodes[(i-1)/fanOut]); err != nil {
			return err
		}
	}
	return nil
}

// treeDepth is the depth of a breadth-first balanced tree of count nodes.
func treeDepth(count, fanOut int) int {
	depth := 0
	for i := count - 1; i > 0; i = (i - 1) / fanOut {
		depth++
	}
	return depth
}

// RandomTree connects each node after the first (station) to a uniformly
// chosen earlier node that has fewer than maxChildren children.
func (n *Network) RandomTree(nodes []*Node, maxChildren int) error {
	if maxChildren <= 0 {
		return fmt.Errorf("sim: random tree needs maxChildren > 0, got %d", maxChildren)
	}
	children := make([]int, len(nodes))
	open := make([]int, 0, len(nodes)) // indices with room, in order
	if len(nodes) > 0 {
		open = append(open, 0)
	}
	for i := 1; i < len(nodes); i++ {
		k := n.rng.IntN(len(open))
		p := open[k]
		if err := n.Connect(nodes[i], nodes[p]); err != nil {
			return err
		}
		children[p]++
		if children[p] >= maxChildren {
			open = append(open[:k], open[k+1:]...)
		}
		open = append(open, i)
	}
	return nil
}
