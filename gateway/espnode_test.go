package gateway

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// The ESP-side library (esp/), built for the host as painlessMesh builds
// itself on Linux, in a real mesh over loopback TCP: three C++ nodes in a
// chain below the gateway (depth 3) and a Go node beside them. Every node
// shows in REST /api/v1/nodes with the chip's values, its firmware, role
// and hardware, from telemetry as the Go node does; a status query (full
// and enhanced) is answered; a critical change (low memory) arrives at
// once, long before the next regular frame, and so does a reboot loop.
func TestESPLibraryNodesInGateway(t *testing.T) {
	cpppeer.BuildFleetNode(t) // first: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const (
		fw  = "1.2.0"
		md5 = "9e107d9d372bb6826bd81d3542a419d6"
		// Another build of the same version: the collector names nodes
		// by what the last full report of their firmware said.
		goMD5 = "e4d909c290d0fb1ca068ffaddf22cbd0"
	)
	// A long interval: what arrives early is what the rules send at once.
	node := func(id uint32, connect string, listen bool) *cpppeer.Peer {
		return cpppeer.StartFleetNode(ctx, t, cpppeer.FleetConfig{ID: id, Listen: listen, Connect: connect,
			Role: "sensor", Firmware: fw, MD5: md5, Interval: 60})
	}
	a := node(101, "", true)
	budget, err := a.WaitEvent(ctx, "budget")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the library's state on the host (64-bit): %d bytes (sizeof(MeshFleet))", budget.Bytes)
	b := node(102, a.Addr(), true)
	node(103, b.Addr(), false)

	goNode, err := tcp.New(tcp.Config{
		Node:    mesh.Config{ID: 201},
		Connect: []string{a.Addr()},
		Plugins: []mesh.Plugin{status.NewReporter(status.ReporterConfig{Interval: time.Minute, Providers: status.Providers{
			Firmware:   func() (string, string) { return fw, goMD5 },
			Identity:   func() (string, string) { return "sensor", "ESP32" },
			FreeMemory: func(time.Time) uint32 { return 50000 },
			RSSI:       func(time.Time) int8 { return -70 },
		}}, time.Now())},
	})
	if err != nil {
		t.Fatal(err)
	}
	goCtx, stopGo := context.WithCancel(ctx)
	goDone := make(chan error, 1)
	go func() { goDone <- goNode.Run(goCtx) }()
	defer func() { stopGo(); <-goDone }()

	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.Node.Listen = ""
	cfg.Node.Connect = []string{a.Addr()}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, stopGW := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.RunTCP(gwCtx) }()
	defer func() { stopGW(); <-done }()
	waitReady(t, ctx, g, done)

	cppIDs := []uint32{101, 102, 103}
	want := map[uint32]func(fleet.Node) error{}
	for _, id := range cppIDs {
		want[id] = func(n fleet.Node) error {
			// The host platform's chip: 40960 bytes free, -60 dBm.
			if n.Status != "online" || n.Source != "telemetry" && n.Source != "query" || n.FreeMemory != 40960 || n.RSSI != -60 ||
				n.UptimeS > 60 ||
				n.WiFi != 80 || n.Firmware != fw || n.FirmwareMD5 != md5 || n.Role != "sensor" || n.Hardware != "ESP8266" ||
				n.Hops == nil || n.Connections == 0 {
				return fmt.Errorf("C++ node %d: %+v", id, n)
			}
			return nil
		}
	}
	want[201] = func(n fleet.Node) error {
		if n.Status != "online" || n.Source != "telemetry" && n.Source != "query" || n.FreeMemory != 50000 || n.RSSI != -70 ||
			n.Firmware != fw || n.Role != "sensor" || n.Hardware != "ESP32" {
			return fmt.Errorf("Go node: %+v", n)
		}
		return nil
	}
	nodes := waitNodes(t, ctx, g, func(ns map[uint32]fleet.Node) error {
		for id, check := range want {
			n, ok := ns[id]
			if !ok {
				return fmt.Errorf("node %d not listed", id)
			}
			if err := check(n); err != nil {
				return err
			}
		}
		return nil
	})
	if h := nodes[103].Hops; *h != 3 {
		t.Errorf("node 103 is %d hops from the gateway, want 3", *h)
	}
	// Both kinds of node fill the same fields of the node document.
	for _, id := range cppIDs {
		if got, goN := shape(nodes[id]), shape(nodes[201]); got != goN {
			t.Errorf("C++ node %d document has fields %s, the Go node %s", id, got, goN)
		}
	}

	// A full query, then an enhanced one, to C++ node 103, three hops
	// away: answered with a report (702), then a stock 604. The node
	// documents' source may be a telemetry frame by the time REST is
	// read, so the collector's counts tell the answers.
	drv := g.driver.(*tcp.Driver)
	stats := func() status.CollectorStats {
		var s status.CollectorStats
		if err := drv.Do(ctx, func(time.Time, *mesh.Node) { s = g.collector.Stats() }); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, q := range []struct {
		form     status.ReportForm
		answered func(before, now status.CollectorStats) bool
	}{
		{status.FormFull, func(b, n status.CollectorStats) bool { return n.Reports > b.Reports }},
		{status.FormEnhanced, func(b, n status.CollectorStats) bool { return n.StockPackages > b.StockPackages }},
	} {
		before := stats()
		var queryErr error
		if err := drv.Do(ctx, func(now time.Time, _ *mesh.Node) {
			_, queryErr = g.collector.Query(now, []uint32{103}, status.QueryOptions{Form: q.form})
		}); err != nil || queryErr != nil {
			t.Fatalf("query %s: %v %v", q.form, err, queryErr)
		}
		for !q.answered(before, stats()) {
			select {
			case <-ctx.Done():
				t.Fatalf("the %s query to node 103 was not answered: collector %+v", q.form, stats())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	// Low memory on node 102: sent at once with its alert bit.
	if err := b.Command("heap 8000"); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	waitNodes(t, ctx, g, func(ns map[uint32]fleet.Node) error {
		if n := ns[102]; n.FreeMemory != 8000 || n.AlertFlags&uint8(status.FlagLowMemory) == 0 {
			return fmt.Errorf("node 102 after low memory: %d bytes free, alerts %#x", n.FreeMemory, n.AlertFlags)
		}
		return nil
	})
	if d := time.Since(asked); d > 10*time.Second {
		t.Errorf("low memory took %v to arrive, want at once (the interval is 60 s)", d)
	}

	// A reboot loop on node 101 (three boots after a crash): sent at once.
	if err := a.Command("crashes 3"); err != nil {
		t.Fatal(err)
	}
	asked = time.Now()
	waitNodes(t, ctx, g, func(ns map[uint32]fleet.Node) error {
		if n := ns[101]; n.AlertFlags&uint8(status.FlagRebootLoop) == 0 {
			return fmt.Errorf("node 101 after a reboot loop: alerts %#x", n.AlertFlags)
		}
		return nil
	})
	if d := time.Since(asked); d > 10*time.Second {
		t.Errorf("the reboot loop took %v to arrive, want at once", d)
	}
	// Every package of the C++ nodes was read as the Go side writes them.
	if s := stats(); s.FramesBad != 0 || s.FramesRefused != 0 || s.BadPackages != 0 || s.Frames == 0 {
		t.Errorf("collector: %+v", s)
	}
}

// shape names which of a node document's status fields are known.
func shape(n fleet.Node) string {
	return fmt.Sprintf("firmware=%t md5=%t role=%t hw=%t mem=%t rssi=%t wifi=%t uptime=%t conns=%t",
		n.Firmware != "", n.FirmwareMD5 != "", n.Role != "", n.Hardware != "", n.FreeMemory != 0, n.RSSI != 0, n.WiFi != 0,
		!n.LastSeen.IsZero(), n.Connections != 0)
}

// waitNodes polls REST /api/v1/nodes until check accepts the nodes
// (bounded: ctx), returning them.
func waitNodes(t *testing.T, ctx context.Context, g *Gateway, check func(map[uint32]fleet.Node) error) map[uint32]fleet.Node {
	t.Helper()
	var last error
	for {
		var list []fleet.Node
		getJSON(t, "http://"+g.HTTPAddr+"/api/v1/nodes", &list)
		ns := map[uint32]fleet.Node{}
		for _, n := range list {
			ns[n.ID] = n
		}
		if last = check(ns); last == nil {
			return ns
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gateway's nodes never matched: %v", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The library's example firmware (esp/examples/sensor), compiled for the
// host as it is written for the chip, joins a loopback mesh and the
// gateway lists it with the version, role and hardware it reports.
func TestESPExampleSketchInGateway(t *testing.T) {
	bin := cpppeer.BuildSketch(t, "sensor/sensor.ino")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cpppeer.StartSketch(ctx, t, bin, 301, addr, "")

	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.Node.Listen = ""
	cfg.Node.Connect = []string{addr}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, stopGW := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.RunTCP(gwCtx) }()
	defer func() { stopGW(); <-done }()
	waitReady(t, ctx, g, done)
	waitNodes(t, ctx, g, func(ns map[uint32]fleet.Node) error {
		if n := ns[301]; n.Status != "online" || n.Firmware != "1.0.0" || n.Role != "sensor" || n.Hardware != "ESP8266" || n.FreeMemory == 0 {
			return fmt.Errorf("example node: %+v", n)
		}
		return nil
	})
}
