package sim

import (
	"testing"

	"github.com/meshfleet/meshfleet/protocol"
)

// The longest chain whose node syncs painlessMesh can parse is the one the
// README states (129 nodes), and one more node is too many.
func TestNodeSyncNestingLimit(t *testing.T) {
	if got := maxPathNodes(); got != 129 {
		t.Fatalf("longest parsable path %d nodes, want 129", got)
	}
	if d := nodeSyncNesting(129); d > protocol.MaxNesting {
		t.Fatalf("129-node path nests %d levels, over %d", d, protocol.MaxNesting)
	}
	if d := nodeSyncNesting(130); d <= protocol.MaxNesting {
		t.Fatalf("130-node path nests %d levels, within %d", d, protocol.MaxNesting)
	}
	n := New(Config{Seed: 1, Model: Ideal()})
	nodes, err := n.AddMeshNodes(10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Build(TopologyTree, nodes, 2); err != nil {
		t.Fatal(err)
	}
	// A binary tree of 10 nodes (node i joins (i-1)/2): the longest path
	// runs from leaf 7 up through 3, 1 and the root 0, down to 2 and 5.
	if got := n.longestPath(); got != 6 {
		t.Fatalf("longest path %d nodes, want 6", got)
	}
}
