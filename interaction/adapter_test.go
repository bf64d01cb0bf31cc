package interaction

// The adapter between the environment and the feature packages: the only
// file that knows ota and status. It uses ota.Distributor,
// DistributorConfig, CampaignSpec, Image, Receiver, ReceiverConfig,
// MemoryStore, Decode, Compress, Progress and CampaignEvent; and
// status.Reporter, ReporterConfig, Providers, Collector, CollectorConfig,
// NodeUpdated, NodeOnline, AlertEvent (the collector's alert engine) and
// QueryDone.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status"
)

// initialMD5 is the image every receiver runs before its first update.
const initialMD5 = "0123456789abcdef0123456789abcdef"

// nodeFeatures are the plugins of one node and what outlives its restarts.
type nodeFeatures struct {
	otaRole, statusRole string
	chunk               int
	selfTestFails       bool
	memory              uint32 // free heap the reporter reads

	store *ota.MemoryStore // the receiver's flash: survives restarts

	// The running incarnation's plugins.
	dist      *ota.Distributor
	recv      *ota.Receiver
	reporter  *status.Reporter
	collector *status.Collector
}

// newFeatures reads the feature options of add-nodes.
func newFeatures(td *datadriven.TestData) (*nodeFeatures, error) {
	f := &nodeFeatures{chunk: 512, memory: 40_000}
	for _, a := range td.CmdArgs {
		if len(a.Vals) == 0 {
			continue
		}
		v := a.Vals[0]
		switch a.Key {
		case "clock":
		case "ota":
			if v != "distributor" && v != "receiver" {
				return nil, fmt.Errorf("ota=%s is not one of distributor, receiver", v)
			}
			f.otaRole = v
		case "status":
			if v != "collector" && v != "reporter" {
				return nil, fmt.Errorf("status=%s is not one of collector, reporter", v)
			}
			f.statusRole = v
		case "chunk":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("chunk=%s is not a size in bytes", v)
			}
			f.chunk = n
		case "selftest":
			if v != "fail" && v != "pass" {
				return nil, fmt.Errorf("selftest=%s is not one of pass, fail", v)
			}
			f.selfTestFails = v == "fail"
		case "memory":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("memory=%s is not a size in bytes", v)
			}
			f.memory = uint32(n)
		default:
			return nil, fmt.Errorf("unknown option %q (known: root, authority, clock, ota, status, chunk, selftest, memory)", a.Key)
		}
	}
	if f.otaRole == "receiver" {
		f.store = ota.NewMemoryStore(initialMD5)
		f.store.Decode = ota.Decode
	}
	return f, nil
}

// plugins builds the node's plugins for one incarnation.
func (f *nodeFeatures) plugins(id uint32, now time.Time) ([]mesh.Plugin, error) {
	f.dist, f.recv, f.reporter, f.collector = nil, nil, nil, nil
	var ps []mesh.Plugin
	switch f.otaRole {
	case "distributor":
		f.dist = ota.NewDistributor(ota.DistributorConfig{StockChunkSize: f.chunk, ChunkSize: f.chunk, Compress: ota.Compress})
		ps = append(ps, f.dist)
	case "receiver":
		r, err := ota.NewReceiver(ota.ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: f.store, Seed: uint64(id),
			SelfTest: func(string) bool { return !f.selfTestFails }}, now)
		if err != nil {
			return nil, err
		}
		f.recv = r
		ps = append(ps, r)
	}
	if f.statusRole != "" {
		f.reporter = status.NewReporter(status.ReporterConfig{Providers: status.Providers{
			Firmware:   f.firmware,
			FreeMemory: func(time.Time) uint32 { return f.memory },
		}}, now)
		ps = append(ps, f.reporter)
	}
	if f.statusRole == "collector" {
		f.collector = status.NewCollector(status.CollectorConfig{Local: f.reporter}, now)
		ps = append(ps, f.collector)
	}
	return ps, nil
}

func (f *nodeFeatures) firmware() (version, md5 string) {
	if f.store == nil {
		return "1.0.0", initialMD5
	}
	md5, _ = f.store.Active()
	return f.store.ActiveVersion(), md5
}

// featureCommand runs the commands of the feature packages:
//
//	ota-start id=ID mode=stock|pipelined|broadcast size=BYTES [method=none|deflate|heatshrink]
//	          [nodes=(ID,...)] [seed=N] [version=V] [on=ID]
//	                      start a campaign for role sensor, hardware ESP32 on
//	                      the distributor (default the first one added) with a
//	                      deterministic image of size bytes
//	campaign ID           the campaign's state and each node's progress
//	firmware              each receiver's running image, and its download
//	                      (read without side effects: not LastRollback,
//	                      which reports a rollback once)
//	set-memory ID BYTES   the free heap node ID's reporter reads from now on
//	alerts                the collector's active alerts
func (e *env) featureCommand(td *datadriven.TestData, out *strings.Builder) error {
	switch td.Cmd {
	case "ota-start":
		return e.otaStart(td, out)
	case "campaign":
		if len(td.CmdArgs) != 1 {
			return fmt.Errorf("campaign: give one campaign id")
		}
		return e.campaign(td.CmdArgs[0].Key, out)
	case "firmware":
		for _, id := range e.order {
			f := e.nodes[id].features
			if f.store == nil {
				continue
			}
			md5, confirmed := f.store.Active()
			fmt.Fprintf(out, "%d: runs %s", id, short(md5))
			if v := f.store.ActiveVersion(); v != "" {
				fmt.Fprintf(out, " (%s)", v)
			}
			if !confirmed {
				out.WriteString(" on trial")
			}
			if f.recv != nil {
				if tr, have, total, ok := f.recv.Downloading(); ok {
					fmt.Fprintf(out, ", downloading %s %d/%d", tr, have, total)
				}
			}
			out.WriteString("\n")
		}
		return nil
	case "set-memory":
		if len(td.CmdArgs) != 2 {
			return fmt.Errorf("set-memory: want a node id and a size in bytes")
		}
		n, err := e.node(td.CmdArgs[0].Key)
		if err != nil {
			return fmt.Errorf("set-memory: %w", err)
		}
		m, err := strconv.ParseUint(td.CmdArgs[1].Key, 10, 32)
		if err != nil {
			return fmt.Errorf("set-memory: %q is not a size in bytes", td.CmdArgs[1].Key)
		}
		n.features.memory = uint32(m)
		return nil
	case "alerts":
		col := e.collector()
		if col == nil {
			return fmt.Errorf("alerts: no running collector")
		}
		active := col.Alerts().Active()
		if len(active) == 0 {
			out.WriteString("no active alerts\n")
		}
		for _, a := range active {
			fmt.Fprintf(out, "%s %s: %s (value %g, threshold %g)\n", a.ID, a.Severity, a.Message, a.Value, a.Threshold)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", td.Cmd)
}

func (e *env) otaStart(td *datadriven.TestData, out *strings.Builder) error {
	spec := ota.CampaignSpec{Method: "none"}
	spec.Image = ota.Image{Role: "sensor", Hardware: "ESP32", Version: "2.0.0"}
	size, seed := 0, uint64(1)
	var on *node
	for _, a := range td.CmdArgs {
		if len(a.Vals) == 0 {
			return fmt.Errorf("ota-start: unexpected argument %q", a.Key)
		}
		v := a.Vals[0]
		var err error
		switch a.Key {
		case "id":
			spec.ID = v
		case "mode":
			spec.Mode, err = ota.ParseMode(v)
		case "method":
			spec.Method = v
		case "size":
			size, err = strconv.Atoi(v)
		case "seed":
			seed, err = strconv.ParseUint(v, 10, 64)
		case "version":
			spec.Image.Version = v
		case "nodes":
			for _, s := range a.Vals {
				n, err := e.node(s)
				if err != nil {
					return fmt.Errorf("ota-start: nodes: %w", err)
				}
				spec.Nodes = append(spec.Nodes, n.id)
			}
		case "on":
			on, err = e.node(v)
		default:
			err = fmt.Errorf("unknown option %q (known: id, mode, method, size, seed, version, nodes, on)", a.Key)
		}
		if err != nil {
			return fmt.Errorf("ota-start: %w", err)
		}
	}
	if size <= 0 {
		return fmt.Errorf("ota-start: size=BYTES is required")
	}
	spec.Image.Data = image(size, seed)
	if on == nil {
		for _, id := range e.order {
			if e.nodes[id].features.otaRole == "distributor" {
				on = e.nodes[id]
				break
			}
		}
	}
	if on == nil || on.features.dist == nil {
		return fmt.Errorf("ota-start: no running distributor")
	}
	var c *ota.Campaign
	var err error
	if serr := e.step(on, func(now time.Time) {
		c, err = on.features.dist.Start(now, spec)
	}); serr != nil {
		return serr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "campaign %s: image %s, %d bytes, %s, %s\n", c.ID, short(c.Image.MD5), c.Image.Size, c.Mode, c.Method)
	return nil
}

func (e *env) campaign(id string, out *strings.Builder) error {
	for _, nid := range e.order {
		d := e.nodes[nid].features.dist
		if d == nil {
			continue
		}
		c, ok := d.Campaign(id)
		if !ok {
			continue
		}
		fmt.Fprintf(out, "campaign %s %s", c.ID, c.State)
		if c.Reason != "" {
			fmt.Fprintf(out, " (%s)", c.Reason)
		}
		out.WriteString("\n")
		for _, p := range c.Nodes() {
			fmt.Fprintf(out, "  node %d: %s %d/%d chunks", p.Node, p.State, p.Done, p.Total)
			if p.Err != "" {
				fmt.Fprintf(out, " (%s)", p.Err)
			}
			out.WriteString("\n")
		}
		return nil
	}
	return fmt.Errorf("campaign: no campaign %q", id)
}

func (e *env) collector() *status.Collector {
	for _, id := range e.order {
		if c := e.nodes[id].features.collector; c != nil && e.nodes[id].sim.Up() {
			return c
		}
	}
	return nil
}

// featureCondition is a run until= condition of the feature packages:
// campaign-ended holds once every campaign started has ended; holds once
// the receiver of params["node"] holds params["chunks"] chunks of its
// download.
func (e *env) featureCondition(name string, params map[string]string) (func() bool, error) {
	switch name {
	case "holds":
		n, err := e.node(params["node"])
		if err != nil {
			return nil, fmt.Errorf("holds: node=%w", err)
		}
		want, err := strconv.Atoi(params["chunks"])
		if err != nil {
			return nil, fmt.Errorf("holds: chunks=%q is not a count", params["chunks"])
		}
		return func() bool {
			r := n.features.recv
			if r == nil || !n.sim.Up() {
				return false
			}
			_, have, _, ok := r.Downloading()
			return ok && have >= want
		}, nil
	case "campaign-ended":
		return func() bool {
			started := false
			for _, id := range e.order {
				if d := e.nodes[id].features.dist; d != nil {
					for _, c := range d.Campaigns() {
						if c.Active() {
							return false
						}
						started = true
					}
				}
			}
			return started
		}, nil
	}
	return nil, fmt.Errorf("unknown condition %q (known: converged, campaign-ended, holds)", name)
}

// featureTypes names the feature packages' package types.
var featureTypes = map[int]string{
	ota.TypeOffer: "OTA_OFFER", ota.TypeNeed: "OTA_NEED", ota.TypeChunk: "OTA_CHUNK",
	ota.TypeReport: "OTA_REPORT", ota.TypeRefuse: "OTA_REFUSE", ota.TypeEnd: "OTA_END",
	status.TypeTelemetry: "TELEMETRY", status.TypeStatusQuery: "STATUS_QUERY",
	status.TypeStatusReport: "STATUS_REPORT", status.TypeTelemetryControl: "TELEMETRY_CONTROL",
}

// featureTypeName names a feature package's package type and gives its
// category (ota or status).
func featureTypeName(t int) (name, category string, ok bool) {
	name, ok = featureTypes[t]
	switch {
	case !ok:
		return "", "", false
	case strings.HasPrefix(name, "OTA_"):
		return name, "ota", true
	}
	return name, "status", true
}

// payloadKey is the JSON key of a package's chunk payload, if it has one.
func payloadKey(t int) string {
	switch t {
	case ota.TypeChunk:
		return "d"
	case protocol.TypeOTAData:
		return "data"
	}
	return ""
}

// describeFeatureEvent renders the feature packages' events.
func describeFeatureEvent(ev mesh.Event) (text, category string, ok bool) {
	switch ev := ev.(type) {
	case ota.Progress:
		s := fmt.Sprintf("ota %s %s %s %d/%d chunks", ev.Transfer, ev.Mode, ev.State, ev.Done, ev.Total)
		if ev.Err != "" {
			s += " (" + ev.Err + ")"
		}
		return s, "ota", true
	case ota.CampaignEvent:
		if ev.Node == 0 {
			return fmt.Sprintf("campaign %s %s", ev.Campaign, ev.State), "ota", true
		}
		p := ev.Progress
		s := fmt.Sprintf("campaign %s: node %d %s %d/%d chunks", ev.Campaign, ev.Node, p.State, p.Done, p.Total)
		if p.Err != "" {
			s += " (" + p.Err + ")"
		}
		return s, "ota", true
	case status.NodeUpdated:
		m := ev.Metrics
		return fmt.Sprintf("status of %d from %s: memory %d, alerts %s", ev.Node, ev.Source, m.FreeMemory, m.Alerts), "status", true
	case status.NodeOnline:
		state := "offline"
		if ev.Online {
			state = "online"
		}
		return fmt.Sprintf("node %d %s (%s)", ev.Node, state, ev.Reason), "status", true
	case status.AlertEvent:
		a := ev.Alert
		return fmt.Sprintf("alert %s %s %s: %s (value %g, threshold %g)", ev.Transition, a.ID, a.Severity, a.Message, a.Value, a.Threshold), "status", true
	case status.QueryDone:
		return fmt.Sprintf("query %d done: answered %v, cached %v, missing %v", ev.ID, ev.Answered, ev.Cached, ev.Missing), "status", true
	}
	return "", "", false
}
