// Package prom exports the fleet as Prometheus metrics: per-node gauges
// labelled by node id, mesh-wide gauges, OTA progress, and whatever
// gateway internals the caller registers on the same registry.
package prom

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfleet/meshfleet/fleet"
)

// Namespace prefixes every metric name.
const Namespace = "meshfleet"

// scrapeTimeout bounds the wait for the service in one scrape: Collect
// gets no context, and Prometheus' default scrape timeout is 10 s.
const scrapeTimeout = 5 * time.Second

// Exporter collects from a fleet.Service at scrape time, so a scrape always
// sees one consistent snapshot and nothing is cached between scrapes.
type Exporter struct {
	svc fleet.Service

	timeout time.Duration
	fleetUp *prometheus.Desc

	up, uptime, freeMem, rssi, latency, loss, conns, health, hops *prometheus.Desc
	rx, tx, dropped, info                                         *prometheus.Desc
	meshNodes, meshOnline, meshHealth, meshAlerts, meshMaxHops    *prometheus.Desc
	alert, alertSeverity                                          *prometheus.Desc
	otaCampaigns, otaCampaignState                                *prometheus.Desc
	otaState, otaChunks, otaTotal, otaCompleted, otaFailed        *prometheus.Desc
}

// NewExporter builds the collector for svc.
func NewExporter(svc fleet.Service) *Exporter {
	node := []string{"node_id"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &Exporter{
		svc:     svc,
		timeout: scrapeTimeout,
		// The exporter pattern for a source that may not answer: an _up
		// gauge, while the process and Go series are still served.
		fleetUp: d("fleet_up", "1 if the gateway answered this scrape; 0 if it failed or did not answer in time, and the node, mesh, alert and OTA series are left out."),
		up:      d("node_up", "1 if the node reported within its offline timeout.", node...),
		uptime:  d("node_uptime_seconds", "Node uptime as last reported.", node...),
		freeMem: d("node_free_memory_bytes", "Free heap as last reported.", node...),
		rssi:    d("node_rssi_dbm", "WiFi signal strength as last reported.", node...),
		latency: d("node_latency_seconds", "Latency to the gateway (TIME_DELAY round trip estimate).", node...),
		loss:    d("node_packet_loss_ratio", "Packet loss as last reported, 0..1.", node...),
		conns:   d("node_connections", "Direct mesh connections of the node.", node...),
		health:  d("node_health_score", "Node health 0..100.", node...),
		hops:    d("node_hops", "Hops from the gateway.", node...),
		// The nodes count these themselves and start again from 0 when
		// they restart: counters from another system that can reset are
		// still counters (rate() handles the reset), named _total.
		rx:          d("node_messages_received_total", "Messages received, as the node counts them (resets when the node restarts).", node...),
		tx:          d("node_messages_sent_total", "Messages sent, as the node counts them (resets when the node restarts).", node...),
		dropped:     d("node_messages_dropped_total", "Messages dropped, as the node counts them (resets when the node restarts).", node...),
		info:        d("node_firmware_info", "Firmware of the node (value 1), for nodes whose version or md5 is known.", "node_id", "version", "md5", "role", "hardware"),
		meshNodes:   d("mesh_nodes", "Nodes known in the mesh, the gateway included."),
		meshOnline:  d("mesh_nodes_online", "Nodes currently online."),
		meshHealth:  d("mesh_health_score", "Mesh health score 0..100."),
		meshAlerts:  d("mesh_alerts_active", "Active (not cleared) alerts."),
		meshMaxHops: d("mesh_max_hops", "Depth of the mesh tree seen from the gateway."),
		// The severity is a set of 0/1 series, like OTA states, so an
		// alert that escalates keeps its series.
		alert:         d("alert_active", "Active alerts (value 1), by node and type; the severity is in meshfleet_alert_severity.", "node_id", "alert_type"),
		alertSeverity: d("alert_severity", "Severity of an active alert: 1 for its current severity, 0 for the others.", "node_id", "alert_type", "severity"),
		// Series per campaign exist while it runs or is paused; a finished
		// campaign is only counted in ota_campaigns, so series do not pile
		// up with every campaign. States are sets of 0/1 series, so a state
		// change never changes a series' identity.
		otaCampaigns:     d("ota_campaigns", "OTA campaigns the gateway knows, by state.", "state"),
		otaCampaignState: d("ota_campaign_state", "State of a running or paused campaign: 1 for its current state, 0 for the others.", "campaign", "state"),
		otaState:         d("ota_node_state", "OTA state of a node in a running or paused campaign: 1 for its current state, 0 for the others.", "campaign", "node_id", "state"),
		otaChunks:        d("ota_node_chunks_done", "Chunks a node holds in a running or paused campaign.", "campaign", "node_id"),
		otaTotal:         d("ota_node_chunks", "Chunks of the transfer of a running or paused campaign.", "campaign", "node_id"),
		otaCompleted:     d("ota_campaign_nodes_completed", "Nodes that completed a running or paused campaign.", "campaign"),
		otaFailed:        d("ota_campaign_nodes_failed", "Nodes that failed in a running or paused campaign.", "campaign"),
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{e.fleetUp, e.up, e.uptime, e.freeMem, e.rssi, e.latency, e.loss, e.conns, e.health, e.hops,
		e.rx, e.tx, e.dropped, e.info, e.meshNodes, e.meshOnline, e.meshHealth, e.meshAlerts, e.meshMaxHops, e.alert, e.alertSeverity,
		e.otaCampaigns, e.otaCampaignState, e.otaState, e.otaChunks, e.otaTotal, e.otaCompleted, e.otaFailed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	// oneOf emits a 0/1 series for every state, 1 for current.
	oneOf := func(d *prometheus.Desc, states []string, current string, labels ...string) {
		for _, st := range states {
			v := 0.0
			if st == current {
				v = 1
			}
			g(d, v, append(labels, st)...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	// All read before any series is sent: a scrape shows the fleet whole
	// or not at all.
	nodes, err := e.svc.Nodes(ctx)
	var (
		s         fleet.Summary
		alerts    []fleet.Alert
		campaigns []fleet.Campaign
	)
	if err == nil {
		s, err = e.svc.Summary(ctx)
	}
	if err == nil {
		alerts, err = e.svc.Alerts(ctx, false)
	}
	if err == nil {
		campaigns, err = e.svc.Campaigns(ctx)
	}
	if err != nil {
		g(e.fleetUp, 0)
		return
	}
	g(e.fleetUp, 1)
	for _, n := range nodes {
		id := strconv.FormatUint(uint64(n.ID), 10)
		up := 0.0
		if n.Status == "online" {
			up = 1
		}
		g(e.up, up, id)
		g(e.uptime, float64(n.UptimeS), id)
		// Unknown values (zero in the node document, which omits them)
		// are no series rather than a misleading 0.
		if n.FreeMemory != 0 {
			g(e.freeMem, float64(n.FreeMemory), id)
		}
		if n.RSSI != 0 {
			g(e.rssi, float64(n.RSSI), id)
		}
		if n.LatencyMS != 0 {
			g(e.latency, n.LatencyMS/1000, id)
		}
		g(e.loss, n.LossPct/100, id)
		g(e.conns, float64(n.Connections), id)
		g(e.health, float64(n.Health), id)
		if n.Hops != nil {
			g(e.hops, float64(*n.Hops), id)
		}
		counter(e.rx, float64(n.MessagesRx), id)
		counter(e.tx, float64(n.MessagesTx), id)
		counter(e.dropped, float64(n.Dropped), id)
		if n.Firmware != "" || n.FirmwareMD5 != "" {
			g(e.info, 1, id, n.Firmware, n.FirmwareMD5, n.Role, n.Hardware)
		}
	}
	total, online := fleet.CountNodes(nodes)
	g(e.meshNodes, float64(total))
	g(e.meshOnline, float64(online))
	g(e.meshHealth, float64(s.HealthScore))
	g(e.meshAlerts, float64(s.ActiveAlerts))
	g(e.meshMaxHops, float64(s.MaxHops))
	// Several alerts of one kind on one node would collide as series; the
	// engine de-duplicates by (node, kind), so this is one series each.
	seen := map[string]bool{}
	for _, a := range alerts {
		id := strconv.FormatUint(uint64(a.NodeID), 10)
		if k := id + "/" + a.Type; !seen[k] {
			seen[k] = true
			g(e.alert, 1, id, a.Type)
			oneOf(e.alertSeverity, fleet.AlertSeverities, a.Severity, id, a.Type)
		}
	}
	byState := map[string]int{}
	for _, c := range campaigns {
		byState[c.State]++
		if c.State != "running" && c.State != "paused" {
			continue
		}
		oneOf(e.otaCampaignState, []string{"running", "paused"}, c.State, c.ID)
		g(e.otaCompleted, float64(c.Completed), c.ID)
		g(e.otaFailed, float64(c.Failed), c.ID)
		for id, p := range c.Nodes {
			oneOf(e.otaState, fleet.ProgressStates, p.State, c.ID, id)
			g(e.otaChunks, float64(p.Chunks), c.ID, id)
			g(e.otaTotal, float64(p.Total), c.ID, id)
		}
	}
	for _, st := range fleet.CampaignStates {
		g(e.otaCampaigns, float64(byState[st]), st)
	}
}

// MeshLabel names the mesh on every series, so the scrapes of several
// gateways (one per mesh) merge without two series alike, the Go and
// process series of each gateway included.
const MeshLabel = "mesh"

// Registry is a Prometheus registry whose collectors' series all carry
// the mesh label.
type Registry struct {
	*prometheus.Registry
	labelled prometheus.Registerer
}

// MustRegister registers cs with the mesh label added to their series.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.labelled.MustRegister(cs...) }

// NewRegistry returns a registry with the exporter and the Go runtime and
// process collectors for the gateway itself, every series labelled
// mesh="<mesh>"; mesh "" adds no label (one mesh, as before mesh ids).
func NewRegistry(svc fleet.Service, mesh string) *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{Registry: reg, labelled: reg}
	if mesh != "" {
		r.labelled = prometheus.WrapRegistererWith(prometheus.Labels{MeshLabel: mesh}, reg)
	}
	r.MustRegister(NewExporter(svc), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: reg.labelled})
}
