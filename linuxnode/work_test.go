package linuxnode

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// The receiver's store work (verify and switch an image on disk) goes
// through the node's host wrapper to the driver, which runs it off the
// node's loop (transport/tcp: TestSlowStoreDoesNotBlockTheLoop).
func TestStoreWorkGoesToTheDriver(t *testing.T) {
	n := mesh.New(mesh.Config{ID: 7}, time.Now())
	var h mesh.Host = otaHost{Host: n}
	wh, ok := h.(mesh.WorkHost)
	if !ok {
		t.Fatal("the receiver's host runs store work inside the node's step")
	}
	ran := false
	wh.Defer(mesh.Work{Do: func() error { ran = true; return nil }, Done: func(time.Time, error) {}})
	if ran {
		t.Fatal("store work ran inside the node's step")
	}
	if rd := n.Ready(); len(rd.Work) != 1 {
		t.Fatalf("%d works for the driver, want 1", len(rd.Work))
	}
}
