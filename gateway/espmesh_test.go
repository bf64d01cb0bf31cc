package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// espMesh is a gateway listening on loopback TCP with host-built C++
// nodes of the ESP library (esp/host/node.cpp) joined below it, each with
// its own state directory (the host model of its flash).
type espMesh struct {
	t     *testing.T
	ctx   context.Context
	g     *Gateway
	addr  string // the gateway's mesh address
	nodes map[uint32]*espNode
	// bits32 starts 32-bit builds of the node (cpppeer.BuildFleetNode32).
	bits32 bool
}

type espNode struct {
	*cpppeer.Peer
	cfg cpppeer.FleetConfig
}

// freeAddr is a loopback address no one listens on (a node keeps it
// across its restarts).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startESPMesh starts the gateway (MQTT off, Offers every 2 s) and stops
// it when the test ends.
func startESPMesh(t *testing.T, ctx context.Context) *espMesh {
	t.Helper()
	cpppeer.BuildFleetNode(t) // cached: callers build it before their deadline starts
	m := &espMesh{t: t, ctx: ctx, addr: freeAddr(t), nodes: map[uint32]*espNode{}}
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.Node.Listen = m.addr
	cfg.OTA.AnnounceInterval = Duration(2 * time.Second)
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.RunTCP(gwCtx) }()
	t.Cleanup(func() { stop(); <-done })
	waitReady(t, ctx, g, done)
	m.g = g
	return m
}

// add starts node id below parent (0: the gateway), with a trial-boot
// state directory unless cfg names one (or an Image, or a StockImage) and
// a deadline of 10 s to rejoin unless cfg gives one.
func (m *espMesh) add(id, parent uint32, cfg cpppeer.FleetConfig) *espNode {
	m.t.Helper()
	cfg.ID = id
	cfg.Connect = m.addr
	if parent != 0 {
		cfg.Connect = m.nodes[parent].cfg.ListenAddr
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = freeAddr(m.t)
	}
	if cfg.State == "" && cfg.Image == "" && cfg.StockImage == "" {
		cfg.State = m.t.TempDir()
		if cfg.TrialDeadline == 0 {
			cfg.TrialDeadline = 10
		}
	}
	start := cpppeer.StartFleetNode
	if m.bits32 {
		start = cpppeer.StartFleetNode32
	}
	n := &espNode{Peer: start(m.ctx, m.t, cfg), cfg: cfg}
	m.nodes[id] = n
	return n
}

// image is a host image of version v with n random bytes after its
// first line (see cpppeer.HostImage).
func hostImage(t *testing.T, version string, neverRejoins bool, n int) []byte {
	t.Helper()
	body := make([]byte, n)
	if _, err := rand.Read(body); err != nil {
		t.Fatal(err)
	}
	return cpppeer.HostImage(version, neverRejoins, body)
}

// campaign uploads img and starts a campaign of it to nodes.
func (m *espMesh) campaign(img []byte, version, mode, compress string, nodes ...uint32) fleet.Campaign {
	m.t.Helper()
	im := uploadREST(m.t, m.g, "sensor", "ESP32", version, img)
	return startREST(m.t, m.g, fleet.CampaignRequest{Image: im.ID, Mode: mode, Compress: compress, Nodes: nodes})
}

// waitCampaign polls REST /api/v1/ota until check accepts campaign id.
func (m *espMesh) waitCampaign(id string, check func(fleet.Campaign) error) fleet.Campaign {
	m.t.Helper()
	for {
		c := campaignsREST(m.t, m.g)[id]
		err := check(c)
		if err == nil {
			return c
		}
		select {
		case <-m.ctx.Done():
			for id, n := range m.nodes {
				m.t.Logf("C++ node %d: %s", id, n.Tail())
			}
			m.t.Fatalf("campaign %s: %v", id, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodesIn is a check that every node of ids is in state in campaign c.
func nodesIn(state string, ids ...uint32) func(fleet.Campaign) error {
	return func(c fleet.Campaign) error {
		for _, id := range ids {
			if p := c.Nodes[strconv.FormatUint(uint64(id), 10)]; p.State != state {
				return fmt.Errorf("node %d is %q (%s), want %s", id, p.State, p.Error, state)
			}
		}
		return nil
	}
}

// metrics is the collector's model of node id.
func (m *espMesh) metrics(id uint32) status.Metrics {
	m.t.Helper()
	var got status.Metrics
	err := m.g.driver.(*tcp.Driver).Do(m.ctx, func(time.Time, *mesh.Node) {
		for _, st := range m.g.collector.Model().Nodes() {
			if st.ID == id {
				got = st.Metrics
			}
		}
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return got
}

// runs reports whether node n's valid image (app.bin in its state
// directory) is img.
func (n *espNode) runs(img []byte) error {
	got, err := os.ReadFile(filepath.Join(n.cfg.State, "app.bin"))
	if err != nil {
		return fmt.Errorf("C++ node %d: %w", n.cfg.ID, err)
	}
	if md5Hex(got) != md5Hex(img) {
		return fmt.Errorf("C++ node %d runs %s, want %s", n.cfg.ID, md5Hex(got), md5Hex(img))
	}
	return nil
}

// The ESP32 trial boot in the host model: a node that takes a verified
// image restarts into it on trial, rejoins and marks it valid, and the
// campaign sees it confirmed; an image that never rejoins gives up at its
// deadline, the bootloader model boots the previous image again, and the
// node reports rolled_back with the reason: the campaign shows it, REST
// shows the previous firmware again and the status carries otaState
// rolled back. A trial image that loses power before it is confirmed is
// rolled back at the next boot, and says why.
func TestESPLibraryTrialBootRollsBack(t *testing.T) {
	cpppeer.BuildFleetNode(t) // before the deadline: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := startESPMesh(t, ctx)
	const factory = "0123456789abcdef0123456789abcdef"
	relay := m.add(11, 0, cpppeer.FleetConfig{MD5: factory, Firmware: "1.0.0", Interval: 2, TrialDeadline: 3})
	leaf := m.add(12, 11, cpppeer.FleetConfig{MD5: factory, Firmware: "1.0.0", Interval: 2, TrialDeadline: 3})

	good := hostImage(t, "2.0.0", false, 30_000)
	c := m.campaign(good, "2.0.0", "broadcast", "heatshrink", 11, 12)
	m.waitCampaign(c.ID, nodesIn("confirmed", 11, 12))
	for _, n := range []*espNode{relay, leaf} {
		if err := n.runs(good); err != nil {
			t.Fatal(err)
		}
		// Booted on trial after the switch.
		if _, err := n.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "boot" && e.Trial && e.MD5 == md5Hex(good) }); err != nil {
			t.Fatal(err)
		}
	}
	waitNodes(t, ctx, m.g, func(ns map[uint32]fleet.Node) error {
		if n := ns[12]; n.FirmwareMD5 != md5Hex(good) || n.Firmware != "2.0.0" {
			return fmt.Errorf("node 12 shows firmware %s %s after the switch", n.Firmware, n.FirmwareMD5)
		}
		return nil
	})

	bad := hostImage(t, "3.0.0", true, 30_000)
	c = m.campaign(bad, "3.0.0", "broadcast", "heatshrink", 12)
	done := m.waitCampaign(c.ID, nodesIn("rolled_back", 12))
	if p := done.Nodes["12"]; p.Error == "" {
		t.Errorf("rollback reported without a reason: %+v", p)
	} else {
		t.Logf("node 12 rolled back: %s", p.Error)
	}
	ev, err := leaf.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "boot" && e.RolledBack })
	if err != nil {
		t.Fatal(err)
	}
	if ev.MD5 != md5Hex(good) {
		t.Errorf("after the rollback node 12 runs %s, want the previous image %s", ev.MD5, md5Hex(good))
	}
	if err := leaf.runs(good); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, ctx, m.g, func(ns map[uint32]fleet.Node) error {
		if n := ns[12]; n.FirmwareMD5 != md5Hex(good) || n.Firmware != "2.0.0" || n.Status != "online" {
			return fmt.Errorf("node 12 shows %s firmware %s %s after the rollback", n.Status, n.Firmware, n.FirmwareMD5)
		}
		return nil
	})
	for m.metrics(12).OTAState != status.OTARolledBack {
		select {
		case <-ctx.Done():
			t.Fatalf("node 12's status says OTA %s, want rolled_back", m.metrics(12).OTAState)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// A trial image that resets before it is confirmed (a crash, a power
	// cut): the bootloader model rolls it back at the next boot. Node 12
	// gets a deadline it will not reach first, and loses power on trial.
	leaf.Kill()
	leaf = m.restart(12, func(c *cpppeer.FleetConfig) { c.TrialDeadline = 60 })
	bad = hostImage(t, "4.0.0", true, 30_000)
	c = m.campaign(bad, "4.0.0", "broadcast", "heatshrink", 12)
	if _, err := leaf.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "boot" && e.Trial && e.MD5 == md5Hex(bad) }); err != nil {
		t.Fatal(err)
	}
	leaf.Kill()
	leaf = m.restart(12, func(*cpppeer.FleetConfig) {})
	// "boot" comes before "ready", which starting the node waited for.
	if evs := leaf.Events(); len(evs) == 0 || evs[0].Event != "boot" || !evs[0].RolledBack || evs[0].MD5 != md5Hex(good) {
		t.Fatalf("the boot after a reset on trial: %+v, want a rollback to %s", evs, md5Hex(good))
	}
	done = m.waitCampaign(c.ID, nodesIn("rolled_back", 12))
	if p := done.Nodes["12"]; !strings.Contains(p.Error, "reset before it was confirmed") {
		t.Errorf("rollback after a reset on trial reported as %q", p.Error)
	}
	if err := leaf.runs(good); err != nil {
		t.Fatal(err)
	}
}

// espTree is the mixed mesh's layout below the gateway: parent of each C++
// node (0: the gateway), depth 3 at nodes 28, 29 and 30.
var espTree = []struct{ id, parent uint32 }{
	{21, 0}, {22, 0},
	{23, 21}, {24, 21}, {25, 21}, {26, 22}, {27, 22},
	{28, 23}, {29, 23}, {30, 26},
}

// espDepth is node id's hops from the gateway in espTree.
func espDepth(id uint32) int {
	for _, n := range espTree {
		if n.id == id {
			if n.parent == 0 {
				return 1
			}
			return 1 + espDepth(n.parent)
		}
	}
	return 0
}

func espIDs() []uint32 {
	ids := make([]uint32, len(espTree))
	for i, n := range espTree {
		ids[i] = n.id
	}
	return ids
}

// restart starts node id again after it ended, as it was configured
// (its flash, the state directory, kept), with change applied.
func (m *espMesh) restart(id uint32, change func(*cpppeer.FleetConfig)) *espNode {
	m.t.Helper()
	old := m.nodes[id]
	cfg := old.cfg
	change(&cfg)
	start := cpppeer.StartFleetNode
	if m.bits32 {
		start = cpppeer.StartFleetNode32
	}
	n := &espNode{Peer: start(m.ctx, m.t, cfg), cfg: cfg}
	m.nodes[id] = n
	return n
}

// campaignTo sends img to all ten nodes in mode and method, and checks
// that every node confirmed it, runs exactly it (its flash's valid image)
// and says so in its status (firmware md5, OTA state confirmed).
// during, if not nil, runs once the campaign started.
func (m *espMesh) campaignTo(img []byte, version, mode, method string, during func()) {
	m.t.Helper()
	start := time.Now()
	c := m.campaign(img, version, mode, method, espIDs()...)
	if during != nil {
		during()
	}
	m.waitCampaign(c.ID, nodesIn("confirmed", espIDs()...))
	m.t.Logf("%s %s: %d-byte image confirmed by all ten C++ nodes after %.1f s", mode, method, len(img), time.Since(start).Seconds())
	for _, id := range espIDs() {
		if err := m.nodes[id].runs(img); err != nil {
			m.t.Fatal(err)
		}
	}
	for _, id := range espIDs() {
		for {
			got := m.metrics(id)
			if got.FirmwareMD5 == md5Hex(img) && got.FirmwareVersion == version && got.OTAState == status.OTAConfirmed && got.OTAProgress == 100 {
				break
			}
			select {
			case <-m.ctx.Done():
				m.t.Fatalf("C++ node %d's status after the switch: firmware %s %s, OTA %s %d%%", id, got.FirmwareVersion, got.FirmwareMD5, got.OTAState, got.OTAProgress)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// The Must-show mixed mesh: the Go gateway and ten host-built C++ nodes
// of the ESP library in a tree of depth 3 over loopback TCP. Every node's
// status is in REST /api/v1/nodes with the chip's values within two
// report intervals; a broadcast + heatshrink campaign and a broadcast +
// deflate campaign reach all ten, each writing exactly the image and
// restarting into it on trial; a node whose new image never rejoins rolls
// back to the previous one in the host model of the ESP32 trial boot; a
// node killed mid-transfer resumes from the chunk bitmap in its flash,
// fetching none of the chunks it held again.
func TestESPLibraryMixedMesh(t *testing.T) {
	cpppeer.BuildFleetNode(t) // before the deadline: a cold build takes its own time
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	m := startESPMesh(t, ctx)
	const (
		interval = 3
		factory  = "0123456789abcdef0123456789abcdef"
	)
	for _, n := range espTree {
		cfg := cpppeer.FleetConfig{MD5: factory, Firmware: "1.0.0", Interval: interval, TrialDeadline: 3}
		if n.id == 29 {
			// Node 29 (depth 3) loses power in its first transfer once
			// it took 12 chunks.
			cfg.ExitAfterChunks = 12
		}
		m.add(n.id, n.parent, cfg)
	}

	// (a) Every node listed with real values within two intervals of the
	// last one's start.
	within, stop := context.WithTimeout(ctx, 2*interval*time.Second)
	defer stop()
	waitNodes(t, within, m.g, func(ns map[uint32]fleet.Node) error {
		for _, id := range espIDs() {
			n, ok := ns[id]
			if !ok {
				return fmt.Errorf("node %d not listed", id)
			}
			// The host platform's chip: 40960 bytes free, -60 dBm.
			if n.Status != "online" || n.FreeMemory != 40960 || n.RSSI != -60 || n.WiFi != 80 || n.Firmware != "1.0.0" ||
				n.FirmwareMD5 != factory || n.Role != "sensor" || n.Hardware != "ESP32" || n.Hops == nil || *n.Hops != espDepth(id) ||
				n.Connections == 0 {
				return fmt.Errorf("C++ node %d (depth %d): %+v", id, espDepth(id), n)
			}
		}
		return nil
	})

	// (b) and (c): the same image size, heatshrink, then deflate.
	// (b) and (d): heatshrink, node 29 killed mid-transfer and started
	// again: it resumes from the bitmap in its flash and fetches none of
	// the chunks it held.
	v2 := hostImage(t, "2.0.0", false, 120_000)
	m.campaignTo(v2, "2.0.0", "broadcast", "heatshrink", func() {
		killed, err := m.nodes[29].WaitEvent(ctx, "killed")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.nodes[29].WaitEvent(ctx, "exit"); err != nil {
			t.Fatal(err)
		}
		n := m.restart(29, func(c *cpppeer.FleetConfig) { c.ExitAfterChunks = 0 })
		resumed, err := n.Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "ota_state" && e.State == "resumed" })
		if err != nil {
			t.Fatal(err)
		}
		done, err := n.WaitEvent(ctx, "restart")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node 29 killed after %d of %d chunks, resumed holding %d, then took %d (%d came although held)",
			killed.Taken, killed.Of, resumed.Held, done.Taken, done.Dup)
		if resumed.Held == 0 || resumed.Held > killed.Taken || done.Resumed != resumed.Held || done.Taken != done.Of-done.Resumed || done.Dup != 0 {
			t.Errorf("node 29 resumed holding %d after taking %d; then took %d of %d with %d resumed, %d came twice: held chunks were fetched again",
				resumed.Held, killed.Taken, done.Taken, done.Of, done.Resumed, done.Dup)
		}
	})
	// (c) deflate.
	v3 := hostImage(t, "3.0.0", false, 60_000)
	m.campaignTo(v3, "3.0.0", "broadcast", "deflate", nil)

	// (e) A new image that never rejoins, on node 30 at depth 3: it rolls
	// back to 3.0.0 and the gateway sees it.
	bad := hostImage(t, "4.0.0", true, 60_000)
	c := m.campaign(bad, "4.0.0", "broadcast", "heatshrink", 30)
	done := m.waitCampaign(c.ID, nodesIn("rolled_back", 30))
	t.Logf("node 30 rolled back: %s", done.Nodes["30"].Error)
	if err := m.nodes[30].runs(v3); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, ctx, m.g, func(ns map[uint32]fleet.Node) error {
		if n := ns[30]; n.FirmwareMD5 != md5Hex(v3) || n.Firmware != "3.0.0" || n.Status != "online" {
			return fmt.Errorf("node 30 shows %s firmware %s %s after the rollback", n.Status, n.Firmware, n.FirmwareMD5)
		}
		return nil
	})
}

// figures skips t unless MESHFLEET_FIGURES is set: the figure tests
// measure (a minute or more) and log a table, which CI does not need.
func figures(t *testing.T) {
	if os.Getenv("MESHFLEET_FIGURES") == "" {
		t.Skip("a figure test: run it with MESHFLEET_FIGURES=1 go test ./gateway -run " + t.Name() + " -v")
	}
}

// firmwareLike is n bytes that compress about as a firmware image does:
// runs copied from 64 bytes back mixed with fresh random bytes.
func firmwareLike(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := 64; i < n; i++ {
		if b[i]&3 != 0 { // three in four bytes repeat
			b[i] = b[i-64]
		}
	}
	return b
}

// Transfer time of one image to the same ten C++ nodes (espTree, each
// mode on a fresh mesh of the same program) over meshfleet's broadcast
// with heatshrink and with deflate, against painlessMesh's own stock OTA
// receiver (mesh.initOTAReceive) fed by the gateway in stock and
// stock-turbo mode. Logged with -v as a table with ratios against stock;
// what it asserts is that every node wrote exactly the image.
func TestESPLibraryOTAFigures(t *testing.T) {
	figures(t)
	const size = 100_000
	body := firmwareLike(t, size)
	type row struct {
		mode, method, hardware string
		transfer, confirmed    time.Duration
	}
	rows := []*row{
		{mode: "stock", method: "none", hardware: "ESP8266"},
		{mode: "stock-turbo", method: "none", hardware: "ESP8266"},
		{mode: "broadcast", method: "heatshrink", hardware: "ESP32"},
		{mode: "broadcast", method: "deflate", hardware: "ESP32"},
	}
	for _, r := range rows {
		func() {
			cpppeer.BuildFleetNode(t) // before the deadline: a cold build takes its own time
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m := startESPMesh(t, ctx)
			stock := r.hardware == "ESP8266"
			img := cpppeer.HostImage("2.0.0", false, body)
			cfg := cpppeer.FleetConfig{MD5: "0123456789abcdef0123456789abcdef", Firmware: "1.0.0", Interval: 30}
			for _, n := range espTree {
				if stock {
					cfg.StockImage = filepath.Join(t.TempDir(), "image.bin")
				}
				m.add(n.id, n.parent, cfg)
			}
			// Every node joined: each is listed.
			waitNodes(t, ctx, m.g, func(ns map[uint32]fleet.Node) error {
				for _, id := range espIDs() {
					if ns[id].Status != "online" {
						return fmt.Errorf("node %d not online", id)
					}
				}
				return nil
			})
			im := uploadREST(t, m.g, "sensor", r.hardware, "2.0.0", img)
			start := time.Now()
			req := fleet.CampaignRequest{Image: im.ID, Mode: r.mode, Compress: r.method, Nodes: espIDs()}
			if r.mode == "stock-turbo" {
				req.Nodes = nil // it reaches every node of the role: the ten
			}
			c := startREST(t, m.g, req)
			for _, id := range espIDs() {
				ev, err := m.nodes[id].Wait(ctx, func(e cpppeer.Event) bool { return e.Event == "md5" })
				if err != nil || !ev.OK || ev.MD5 != md5Hex(img) {
					t.Fatalf("%s %s: node %d: md5 %+v %v", r.mode, r.method, id, ev, err)
				}
				r.transfer = max(r.transfer, ev.At.Sub(start))
			}
			if !stock {
				// And restarted into it, rejoined and confirmed.
				m.waitCampaign(c.ID, nodesIn("confirmed", espIDs()...))
				r.confirmed = time.Since(start)
			}
			for _, id := range espIDs() {
				path := filepath.Join(m.nodes[id].cfg.State, "app.bin")
				if stock {
					path = m.nodes[id].cfg.StockImage
				}
				got, err := os.ReadFile(path)
				if err != nil || md5Hex(got) != md5Hex(img) {
					t.Fatalf("%s %s: node %d wrote %d bytes (%v), not the image", r.mode, r.method, id, len(got), err)
				}
			}
		}()
	}
	base := rows[0].transfer.Seconds()
	t.Logf("%d-byte image to ten C++ nodes (tree of depth 3), time until every node verified it:", len(body)+len(cpppeer.HostImage("2.0.0", false, nil)))
	t.Logf("| mode | compression | all ten written (s) | vs stock | all ten confirmed after the trial boot (s) |")
	t.Logf("|---|---|---|---|---|")
	for _, r := range rows {
		conf := "–"
		if r.confirmed > 0 {
			conf = fmt.Sprintf("%.2f", r.confirmed.Seconds())
		}
		t.Logf("| %s | %s | %.2f | %.2f× | %s |", r.mode, r.method, r.transfer.Seconds(), r.transfer.Seconds()/base, conf)
	}
}

// RAM of a C++ node receiving a 1 MiB image with each compression, in
// the 64-bit host build and, where a 32-bit toolchain is installed, in a
// 32-bit build (pointer sizes as on the chips): the library's fixed state
// (sizeof) and the node's heap peak while it wrote the image, above the
// heap before the transfer (glibc's count, painlessMesh's JSON documents
// and strings included), sampled at every write. Logged with -v.
func TestESPLibraryReceiveRAM(t *testing.T) {
	figures(t)
	for _, bits := range []int{64, 32} {
		t.Run(fmt.Sprintf("%dbit", bits), func(t *testing.T) {
			// Before the deadline: a cold build takes its own time.
			cpppeer.BuildFleetNode(t)
			if bits == 32 {
				cpppeer.BuildFleetNode32(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
			defer cancel()
			m := startESPMesh(t, ctx)
			m.bits32 = bits == 32
			n := m.add(41, 0, cpppeer.FleetConfig{MD5: "0123456789abcdef0123456789abcdef", Firmware: "1.0.0", Interval: 30})
			// Reported at start, ota_budget last.
			if _, err := n.WaitEvent(ctx, "ota_budget"); err != nil {
				t.Fatal(err)
			}
			var size [3]int
			inflater := 0
			for _, ev := range n.Events() {
				for i, name := range []string{"budget", "ota_budget", "boot_budget"} {
					if ev.Event == name {
						size[i] = ev.Bytes
					}
				}
				if ev.Event == "ota_budget" {
					inflater = ev.Inflater
				}
			}
			t.Logf("%d-bit: sizeof(MeshFleet) %d, sizeof(MeshFleetOTA) %d, sizeof(MeshFleetBoot) %d, the host's inflater (zlib) %d bytes",
				bits, size[0], size[1], size[2], inflater)
			for i, method := range []string{"none", "heatshrink", "deflate"} {
				version := fmt.Sprintf("2.%d.0", i)
				img := cpppeer.HostImage(version, false, firmwareLike(t, 1<<20))
				c := m.campaign(img, version, "pipelined", method, 41)
				heap, err := n.WaitEvent(ctx, "heap")
				if err != nil {
					t.Fatal(err)
				}
				m.waitCampaign(c.ID, nodesIn("confirmed", 41))
				if err := n.runs(img); err != nil {
					t.Fatal(err)
				}
				t.Logf("%d-bit, %s: 1 MiB image received with a heap peak of %d bytes above the %d before the transfer", bits, method, heap.Peak-heap.Base, heap.Base)
			}
		})
	}
}
