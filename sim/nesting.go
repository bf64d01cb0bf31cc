package sim

import (
	"fmt"

	"github.com/meshfleet/meshfleet/protocol"
)

// A node sync carries the sender's whole side of the mesh as nested JSON,
// two levels ("subs" array and node object) per hop (docs/protocol.md §1.3,
// §4.1). painlessMesh parses with a nesting limit of protocol.MaxNesting,
// so a path of more nodes than maxPathNodes cannot converge: the node
// syncs along it are refused as unparsable.

// nodeSyncNesting is the nesting depth of the deepest node sync on a path
// of pathNodes nodes: the one an end's neighbour sends to that end, which
// carries the other pathNodes-1 nodes in a line.
func nodeSyncNesting(pathNodes int) int {
	var tree protocol.NodeTree
	for i := pathNodes - 1; i >= 1; i-- {
		t := protocol.NodeTree{NodeID: uint32(i)}
		if tree.NodeID != 0 {
			t.Subs = []protocol.NodeTree{tree}
		}
		tree = t
	}
	msg := protocol.NodeSync{NodeTree: tree, Type: protocol.TypeNodeSyncReply, Dest: uint32(pathNodes), From: 1}
	return jsonNesting(msg.AppendJSON(nil))
}

// jsonNesting is the deepest nesting of objects and arrays in b, which
// holds no brackets inside strings (node syncs have only numbers and
// booleans).
func jsonNesting(b []byte) int {
	depth, deepest := 0, 0
	for _, c := range b {
		switch c {
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// maxPathNodes is the longest path, in nodes, whose node syncs stay within
// protocol.MaxNesting.
func maxPathNodes() int {
	n := 2
	for nodeSyncNesting(n+1) <= protocol.MaxNesting {
		n++
	}
	return n
}

// longestPath is the number of nodes on the longest path through the
// wanted connections (exact for the trees Build makes: the farthest node
// from any node is an end of a longest path).
func (n *Network) longestPath() int {
	if len(n.nodes) == 0 {
		return 0
	}
	adj := map[*Node][]*Node{}
	for _, e := range n.edges {
		if !e.removed {
			adj[e.sta] = append(adj[e.sta], e.ap)
			adj[e.ap] = append(adj[e.ap], e.sta)
		}
	}
	farthest := func(from *Node) (*Node, int) {
		dist := map[*Node]int{from: 1}
		queue, last := []*Node{from}, from
		for len(queue) > 0 {
			nd := queue[0]
			queue = queue[1:]
			last = nd
			for _, next := range adj[nd] {
				if _, seen := dist[next]; !seen {
					dist[next] = dist[nd] + 1
					queue = append(queue, next)
				}
			}
		}
		return last, dist[last]
	}
	end, _ := farthest(n.nodes[0])
	_, nodes := farthest(end)
	return nodes
}

// nestingReason explains why the mesh cannot converge if its longest path
// is too long for painlessMesh's node syncs; "" if it is not.
func (n *Network) nestingReason(t Topology) string {
	path := n.longestPath()
	depth := nodeSyncNesting(path)
	if depth <= protocol.MaxNesting {
		return ""
	}
	if t == TopologyChain {
		return fmt.Sprintf("a %d-node chain nests node-sync JSON %d levels deep; painlessMesh's parser stops at %d "+
			"(chains longer than %d nodes cannot converge; use a tree or random topology)", path, depth, protocol.MaxNesting, maxPathNodes())
	}
	return fmt.Sprintf("the longest path of this %s topology, %d nodes, nests node-sync JSON %d levels deep; painlessMesh's parser stops at %d "+
		"(paths longer than %d nodes cannot converge)", t, path, depth, protocol.MaxNesting, maxPathNodes())
}
