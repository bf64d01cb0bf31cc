package interaction

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// TestInteraction runs every script under testdata/. Each script gets a
// fresh environment: an empty simulated mesh on the Ideal link model
// (10 µs per hop, no loss, no airtime), so its transcript depends only on
// the nodes' logic.
//
// Commands (datadriven syntax; a bare word is an argument, key=value or
// key=(a,b) an option):
//
//	add-nodes ID... [root] [authority] [clock=N] [ota=distributor|receiver] [status=collector|reporter]
//	          [chunk=BYTES] [selftest=fail] [memory=BYTES]
//	                      boot nodes; authority advertises time authority,
//	                      clock is the node's micros() at boot
//	                      (default ID×1000003); chunk the distributor's chunk
//	                      size, selftest=fail a receiver whose new image
//	                      fails its self test, memory the free heap a
//	                      reporter reads
//	connect STA AP        STA dials AP's soft-AP (and dials again after a loss)
//	cut A B               break the connections between A and B at once
//	partition ID...       cut the listed nodes off from the others, until heal
//	heal                  end the partition; stations dial again after 3 s
//	crash ID              power a node off; its peers see the connections close
//	restart ID            boot it again: fresh state machines, same flash
//	run DURATION          advance the virtual clock, delivering and ticking
//	run until=COND [max=DURATION]
//	                      run until COND holds (converged, or the adapter's
//	                      conditions: campaign-ended, holds node=ID
//	                      chunks=N); max defaults to 10m
//	tick                  run the next instant at which anything happens
//	show CATEGORY...      print only these categories from now on: all, none,
//	                      sync (node sync, connections), time, delay, ota,
//	                      status, app; any command takes show=(...) for
//	                      its own output
//	layout                each node: up or down, connections, known nodes
//	clocks                each running node's mesh time minus the first's
//
// and the feature commands of adapter_test.go (ota-start, campaign,
// set-memory, alerts).
//
// Every step prints, in order, what it made the nodes do: a message line
// "TIME FROM→TO TYPE JSON" per package written on a connection (TO is the
// neighbour, not the final destination; long strings and chunk payloads
// are shortened to their length), a line "TIME ID: EVENT" per event, and
// "TIME STA→AP dial" per connection a station opened. TIME is the virtual
// time in seconds.
func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		e := newEnv(t)
		datadriven.RunTest(t, path, e.handle)
	})
}

// env is one script's world.
type env struct {
	t     *testing.T
	net   *sim.Network
	nodes map[uint32]*node
	order []uint32 // node ids in the order they were added
	// ends are the nodes of each connection: [0] the station, [1] the AP.
	ends map[mesh.ConnID]*[2]uint32
	log  []record
	show map[string]bool // nil: everything
}

// node is one simulated device.
type node struct {
	id    uint32
	clock uint32
	root  bool
	// authority advertises hasTimeAuthority: the others adopt its time.
	authority bool
	sim       *sim.Node
	machine   *recorder // the running incarnation; nil while down
	features  *nodeFeatures
}

// record is one thing a node did: a message written (msg), an event (ev)
// or a connection dialled (dial).
type record struct {
	at   time.Duration
	node uint32
	conn mesh.ConnID
	msg  []byte
	ev   mesh.Event
	dial bool
}

// recorder is the simulator's machine for one node: the real mesh.Node,
// with every output copied to the script's log.
type recorder struct {
	*mesh.Node
	e  *env
	id uint32
}

func (r *recorder) Connect(now time.Time, c mesh.ConnID, station bool) {
	ends := r.e.ends[c]
	if ends == nil {
		ends = &[2]uint32{}
		r.e.ends[c] = ends
	}
	if station {
		ends[0] = r.id
		r.e.add(record{node: r.id, conn: c, dial: true})
	} else {
		ends[1] = r.id
	}
	r.Node.Connect(now, c, station)
}

func (r *recorder) Ready() mesh.Ready {
	rd := r.Node.Ready()
	for _, o := range rd.Messages {
		r.e.add(record{node: r.id, conn: o.Conn, msg: o.Data})
	}
	for _, ev := range rd.Events {
		r.e.add(record{node: r.id, ev: ev})
	}
	return rd
}

func newEnv(t *testing.T) *env {
	// INTERACTION_TRACE=1 prints the simulator's trace of every machine
	// input and output, for debugging a script.
	var trace io.Writer
	if os.Getenv("INTERACTION_TRACE") != "" {
		trace = os.Stderr
	}
	return &env{
		t:     t,
		net:   sim.New(sim.Config{Seed: 1, Model: sim.Ideal(), Trace: trace}),
		nodes: map[uint32]*node{},
		ends:  map[mesh.ConnID]*[2]uint32{},
	}
}

func (e *env) add(r record) {
	r.at = e.net.Elapsed()
	e.log = append(e.log, r)
}

// handle runs one command and returns its transcript.
func (e *env) handle(t *testing.T, td *datadriven.TestData) string {
	e.log = nil
	show := e.show
	// show=(...) on any command filters that command's output only.
	for i, a := range td.CmdArgs {
		if a.Key == "show" && len(a.Vals) > 0 {
			show = categories(a.Vals)
			td.CmdArgs = slices.Delete(slices.Clone(td.CmdArgs), i, i+1)
			break
		}
	}
	var out strings.Builder
	err := func() error {
		switch td.Cmd {
		case "add-nodes":
			return e.addNodes(td)
		case "connect", "cut":
			a, b, err := e.pair(td)
			if err != nil {
				return err
			}
			if td.Cmd == "cut" {
				e.net.Cut(a.sim, b.sim)
				return nil
			}
			return e.net.Connect(a.sim, b.sim)
		case "partition":
			ns, err := e.nodeArgs(td)
			if err != nil {
				return err
			}
			var group []*sim.Node
			for _, n := range ns {
				group = append(group, n.sim)
			}
			e.net.Partition(group)
			return nil
		case "heal":
			e.net.Heal()
			return nil
		case "crash", "restart":
			ns, err := e.nodeArgs(td)
			if err != nil {
				return err
			}
			for _, n := range ns {
				if td.Cmd == "crash" {
					e.net.Crash(n.sim)
					n.machine = nil
				} else {
					e.net.Restart(n.sim)
				}
			}
			return nil
		case "run":
			return e.run(td, &out)
		case "tick":
			first := true
			e.net.RunUntil(func() bool { done := !first; first = false; return done }, time.Hour)
			return nil
		case "show":
			var names []string
			for _, a := range td.CmdArgs {
				names = append(names, a.Key)
			}
			e.show = categories(names)
			show = e.show
			return nil
		case "layout":
			e.layout(&out)
			return nil
		case "clocks":
			e.clocks(&out)
			return nil
		}
		return e.featureCommand(td, &out)
	}()
	var b strings.Builder
	e.format(&b, show)
	b.WriteString(out.String())
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	if b.Len() == 0 {
		return "ok\n"
	}
	return b.String()
}

// categories is the filter for the named categories; nil (everything)
// for "all". "none" names no category.
func categories(names []string) map[string]bool {
	show := map[string]bool{}
	for _, n := range names {
		if n == "all" {
			return nil
		}
		show[n] = true
	}
	return show
}

// addNodes boots the nodes named by the bare arguments.
func (e *env) addNodes(td *datadriven.TestData) error {
	var ids []uint32
	root, authority := false, false
	var clock *uint32
	for _, a := range td.CmdArgs {
		switch {
		case len(a.Vals) == 0 && a.Key == "root":
			root = true
		case len(a.Vals) == 0 && a.Key == "authority":
			authority = true
		case len(a.Vals) == 0:
			id, err := strconv.ParseUint(a.Key, 10, 32)
			if err != nil || id == 0 {
				return fmt.Errorf("add-nodes: %q is not a node id (1..4294967295)", a.Key)
			}
			if e.nodes[uint32(id)] != nil {
				return fmt.Errorf("add-nodes: node %d exists", id)
			}
			ids = append(ids, uint32(id))
		case a.Key == "clock":
			c, err := strconv.ParseUint(a.Vals[0], 10, 32)
			if err != nil {
				return fmt.Errorf("add-nodes: clock=%s is not a 32-bit count of µs", a.Vals[0])
			}
			c32 := uint32(c)
			clock = &c32
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("add-nodes: no node id given")
	}
	for _, id := range ids {
		f, err := newFeatures(td)
		if err != nil {
			return fmt.Errorf("add-nodes: %w", err)
		}
		n := &node{id: id, clock: id * 1000003, root: root, authority: authority, features: f}
		if clock != nil {
			n.clock = *clock
		}
		e.nodes[id] = n
		e.order = append(e.order, id)
		n.sim, err = e.net.AddNode(sim.NodeSpec{
			Config:  mesh.Config{ID: id},
			Machine: func(now time.Time, sn *sim.Node) sim.Machine { return e.boot(n, now, sn) },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// boot builds a node's state machine: at creation, and again on restart
// (micros() starts from 0 after a power cycle).
func (e *env) boot(n *node, now time.Time, sn *sim.Node) sim.Machine {
	cfg := mesh.Config{ID: n.id, Root: n.root, ContainsRoot: n.root, TimeAuthority: n.authority, ClockStart: n.clock,
		// The Ideal links are perfectly symmetric: clocks that agree give
		// an offset of exactly 0, which stock timing retries every 200 ms.
		Timing: mesh.Timing{AcceptZeroOffset: true}}
	if sn.Restarts() > 0 {
		cfg.ClockStart = 0
	}
	mn := mesh.New(cfg, now)
	plugins, err := n.features.plugins(n.id, now)
	if err != nil {
		e.t.Fatalf("node %d: %v", n.id, err)
	}
	for _, p := range plugins {
		mn.Use(p)
	}
	n.machine = &recorder{Node: mn, e: e, id: n.id}
	return n.machine
}

// step runs f as an application input to node n now, then lets the
// simulator act on the node's outputs.
func (e *env) step(n *node, f func(now time.Time)) error {
	return n.sim.Step(func(now time.Time, _ sim.Machine) { f(now) })
}

// nodeArgs returns the nodes named by the bare arguments.
func (e *env) nodeArgs(td *datadriven.TestData) ([]*node, error) {
	var ns []*node
	for _, a := range td.CmdArgs {
		if len(a.Vals) > 0 {
			continue
		}
		n, err := e.node(a.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", td.Cmd, err)
		}
		ns = append(ns, n)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("%s: no node given", td.Cmd)
	}
	return ns, nil
}

func (e *env) pair(td *datadriven.TestData) (*node, *node, error) {
	ns, err := e.nodeArgs(td)
	if err != nil {
		return nil, nil, err
	}
	if len(ns) != 2 {
		return nil, nil, fmt.Errorf("%s: want two nodes, got %d", td.Cmd, len(ns))
	}
	return ns[0], ns[1], nil
}

func (e *env) node(s string) (*node, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%q is not a node id", s)
	}
	n := e.nodes[uint32(id)]
	if n == nil {
		return nil, fmt.Errorf("no node %d", id)
	}
	return n, nil
}

// run advances the clock.
func (e *env) run(td *datadriven.TestData, out *strings.Builder) error {
	var d time.Duration
	limit := 10 * time.Minute
	var until string
	params := map[string]string{} // the condition's own options
	for _, a := range td.CmdArgs {
		var err error
		switch {
		case len(a.Vals) == 0:
			d, err = time.ParseDuration(a.Key)
		case a.Key == "until":
			until = a.Vals[0]
		case a.Key == "max":
			limit, err = time.ParseDuration(a.Vals[0])
		case a.Key == "node" || a.Key == "chunks":
			params[a.Key] = a.Vals[0]
		default:
			err = fmt.Errorf("unknown option %q (known: until, max, node, chunks)", a.Key)
		}
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	if until == "" {
		if d <= 0 {
			return fmt.Errorf("run: give a duration (run 5s) or a condition (run until=converged)")
		}
		e.net.RunFor(d)
		return nil
	}
	cond, err := e.condition(until, params)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if e.net.RunUntil(cond, limit) {
		fmt.Fprintf(out, "%s: %s\n", seconds(e.net.Elapsed()), until)
	} else {
		fmt.Fprintf(out, "%s: still not %s after %v\n", seconds(e.net.Elapsed()), until, limit)
	}
	return nil
}

func (e *env) condition(name string, params map[string]string) (func() bool, error) {
	if name == "converged" {
		return e.net.Converged, nil
	}
	return e.featureCondition(name, params)
}

// layout prints each node's view of the mesh.
func (e *env) layout(out *strings.Builder) {
	for _, id := range e.order {
		n := e.nodes[id]
		if !n.sim.Up() {
			fmt.Fprintf(out, "%d down\n", id)
			continue
		}
		var conns []string
		for _, c := range n.machine.Connections() {
			s := strconv.FormatUint(uint64(c.NodeID), 10)
			if !c.Synced {
				s = "unsynced"
			}
			conns = append(conns, s)
		}
		slices.Sort(conns)
		fmt.Fprintf(out, "%d up: connections [%s], knows %v\n", id, strings.Join(conns, " "), n.machine.NodeList(false))
	}
}

// clocks prints each running node's mesh time minus the first running
// node's, in µs: after time sync they agree within the sync accuracy.
func (e *env) clocks(out *strings.Builder) {
	now := e.net.Now()
	var ref *node
	for _, id := range e.order {
		n := e.nodes[id]
		if !n.sim.Up() {
			continue
		}
		if ref == nil {
			ref = n
		}
		diff := int32(n.machine.NodeTime(now) - ref.machine.NodeTime(now))
		fmt.Fprintf(out, "%d: %+dµs\n", id, diff)
	}
}

// format writes the log of the step, keeping the categories in show.
func (e *env) format(b *strings.Builder, show map[string]bool) {
	for _, r := range e.log {
		at := seconds(r.at)
		switch {
		case r.dial:
			if show == nil || show["sync"] {
				fmt.Fprintf(b, "%s %d→%d dial\n", at, r.node, e.peer(r.conn, r.node))
			}
		case r.msg != nil:
			h, err := protocol.ParseHeader(r.msg)
			name, cat := typeName(h.Type)
			if err != nil {
				name, cat = "INVALID", "other"
			}
			if show == nil || show[cat] {
				fmt.Fprintf(b, "%s %d→%d %s %s\n", at, r.node, e.peer(r.conn, r.node), name, shorten(r.msg, h.Type))
			}
		default:
			text, cat := describeEvent(r.ev)
			if show == nil || show[cat] {
				fmt.Fprintf(b, "%s %d: %s\n", at, r.node, text)
			}
		}
	}
}

// peer is the other end of connection c from node id.
func (e *env) peer(c mesh.ConnID, id uint32) uint32 {
	ends := e.ends[c]
	if ends == nil {
		return 0
	}
	if ends[0] == id {
		return ends[1]
	}
	return ends[0]
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}

// typeName names a package type and gives its category.
func typeName(t int) (name, category string) {
	switch t {
	case protocol.TypeTimeDelay:
		return "TIME_DELAY", "delay"
	case protocol.TypeTimeSync:
		return "TIME_SYNC", "time"
	case protocol.TypeNodeSyncRequest:
		return "NODE_SYNC_REQUEST", "sync"
	case protocol.TypeNodeSyncReply:
		return "NODE_SYNC_REPLY", "sync"
	case protocol.TypeBroadcast:
		return "BROADCAST", "app"
	case protocol.TypeSingle:
		return "SINGLE", "app"
	case protocol.TypeOTAAnnounce:
		return "OTA_ANNOUNCE", "ota"
	case protocol.TypeOTADataRequest:
		return "OTA_DATA_REQUEST", "ota"
	case protocol.TypeOTAData:
		return "OTA_DATA", "ota"
	case protocol.TypeEnhancedStatus:
		return "ENHANCED_STATUS", "status"
	}
	if name, cat, ok := featureTypeName(t); ok {
		return name, cat
	}
	return "TYPE_" + strconv.Itoa(t), "other"
}

// describeEvent renders an event in one line and gives its category.
func describeEvent(ev mesh.Event) (string, string) {
	switch ev := ev.(type) {
	case mesh.NewConnection:
		return fmt.Sprintf("new connection to %d", ev.NodeID), "sync"
	case mesh.ChangedConnections:
		return fmt.Sprintf("layout changed (via %d)", ev.NodeID), "sync"
	case mesh.DroppedConnection:
		return fmt.Sprintf("dropped connection to %d: %s", ev.NodeID, ev.Reason), "sync"
	case mesh.TimeAdjusted:
		return fmt.Sprintf("time adjusted with %d by %dµs", ev.NodeID, ev.Offset), "time"
	case mesh.DelayMeasured:
		return fmt.Sprintf("delay to %d: %dµs", ev.NodeID, ev.Delay), "delay"
	case mesh.MessageReceived:
		return fmt.Sprintf("message type %d from %d: %q", ev.Type, ev.From, ev.Msg), "app"
	case mesh.PackageReceived:
		return fmt.Sprintf("package type %d: %s", ev.Header.Type, shorten(ev.JSON, ev.Header.Type)), "app"
	case mesh.InvalidPackage:
		return fmt.Sprintf("invalid package from %d: %s: %s", ev.NodeID, ev.Reason, ev.Err), "other"
	}
	if text, cat, ok := describeFeatureEvent(ev); ok {
		return text, cat
	}
	return fmt.Sprintf("%T %+v", ev, ev), "other"
}

// shorten returns msg with long string values replaced by their length:
// chunk payloads always (a chunk is named by its index), any other string
// over 40 characters (signatures, telemetry frames). MD5s keep their
// first 8 digits.
func shorten(msg []byte, typ int) string {
	payload := payloadKey(typ)
	var b strings.Builder
	key := ""
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c != '"' {
			b.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(msg) && msg[j] != '"' {
			if msg[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(msg) {
			b.Write(msg[i:])
			break
		}
		s := msg[i : j+1]
		next := j + 1
		for next < len(msg) && msg[next] == ' ' {
			next++
		}
		isKey := next < len(msg) && msg[next] == ':'
		n := len(s) - 2
		switch {
		case isKey:
			key = string(s[1 : len(s)-1])
			b.Write(s)
		case (payload != "" && key == payload) || n > 40:
			fmt.Fprintf(&b, `"<%d chars>"`, n)
		case isMD5(s[1 : len(s)-1]):
			fmt.Fprintf(&b, `"%s…"`, s[1:9])
		default:
			b.Write(s)
		}
		i = j
	}
	return b.String()
}

func isMD5(s []byte) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// image is a deterministic firmware-like image: runs of repeated bytes
// between random stretches, so it compresses as firmware does.
func image(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, size)
	for len(b) < size {
		n := min(rng.IntN(64), size-len(b))
		if rng.IntN(2) == 0 {
			b = append(b, slices.Repeat([]byte{byte(rng.IntN(256))}, n)...)
		} else {
			for range n {
				b = append(b, byte(rng.IntN(256)))
			}
		}
	}
	return b
}

func short(md5 string) string {
	if len(md5) > 8 {
		return md5[:8]
	}
	return md5
}
