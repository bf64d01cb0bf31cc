// Package gateway puts a mesh node, the OTA distributor, the firmware
// store and the status collector together into the program users run, and
// serves them to MQTT, REST and Prometheus through the fleet.Service it
// implements.
//
// The node and its plugins are sans-IO state machines: the gateway only
// ever touches them inside the driver's loop (Driver.Do), so a real TCP
// mesh and a simulated one run the same gateway.
package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/integrations/prom"
	"github.com/meshfleet/meshfleet/integrations/rest"
	"github.com/meshfleet/meshfleet/integrations/web"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Version is reported as the gateway's firmware_version on MQTT.
var Version = "0.1.0"

// Driver runs the gateway's mesh node: transport/tcp.Driver for a real
// mesh, sim.NodeDriver for a simulated one.
type Driver interface {
	Do(ctx context.Context, fn func(now time.Time, n *mesh.Node)) error
	Events() <-chan mesh.Event
	Run(ctx context.Context) error
}

// Gateway is one running gateway. Create it with New, add its plugins to
// the node (Plugins), then Run it with the node's driver.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	store   *firmware.Store
	fan     *fanout
	started time.Time
	sends   *sendBudget // application messages into the mesh

	// imageUse orders campaign starts and image removals, so an image is
	// not removed between a campaign finding it and starting.
	imageUse sync.Mutex

	mu        sync.Mutex
	driver    Driver
	collector *status.Collector
	dist      *ota.Distributor
	history   map[string]ota.CampaignSnapshot // every campaign seen, for listing after it ends and for restarts
	imageMeta map[string]fleet.Image          // by campaign id, its image as stored: an ended campaign keeps it after the image is deleted
	dirty     bool                            // campaign or alert state changed since the last save
	alertData []byte                          // alert state to restore into the next collector
	mqttUp    bool
	hist      historyState
	publicKey ed25519.PublicKey // firmware.public_key: campaigns only for images it verifies
	acks      *ackBook          // alert acknowledgements
	registry  *registryState    // the device registry (registry.go)
	rollouts  *rolloutRunner    // progressive rollouts (rollout.go)
	// mqttBridge is the running MQTT bridge, for the capacity benchmark's
	// status cycles on its virtual clock (benchingest.go).
	mqttBridge atomic.Pointer[mqttbridge.Bridge]
	// tcpBackoff is RunTCP's reconnection schedule; the zero value is the
	// stock one (1 s doubling to 8 s). Tests shorten it.
	tcpBackoff tcp.Backoff
	// historyReopen is the first wait before a history database that
	// could not be opened is tried again (0: historyReopenFirst). Tests
	// shorten it.
	historyReopen time.Duration

	// Addresses actually bound (":0" in the config picks a free port);
	// set before Ready is closed.
	HTTPAddr string
	MQTTAddr string
	ready    chan struct{}
}

// Ready is closed once Run has bound its listeners and started the bridge.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// New opens the firmware store and the persisted state; the mesh is not
// touched until Run.
func New(cfg Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := firmware.Open(cfg.Firmware.Dir, &firmware.Options{MaxSize: cfg.Firmware.MaxUploadSize, MaxStoreSize: cfg.Firmware.MaxStoreSize})
	if err != nil {
		return nil, fmt.Errorf("firmware store: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, store: store, fan: newFanout(), started: time.Now(), sends: newSendBudget(cfg.Send, time.Now), history: map[string]ota.CampaignSnapshot{}, imageMeta: map[string]fleet.Image{}, ready: make(chan struct{})}
	g.log = slog.New(auditTap{Handler: log.Handler(), g: g})
	if err := g.loadState(); err != nil {
		return nil, err
	}
	if g.acks, err = loadAcks(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := g.loadRegistry(); err != nil {
		return nil, err
	}
	if err := g.loadRollouts(); err != nil {
		return nil, err
	}
	g.failOrphans(time.Now())
	if cfg.Firmware.PublicKeyFile != "" {
		if g.publicKey, err = firmware.LoadPublicKey(cfg.Firmware.PublicKeyFile); err != nil {
			return nil, fmt.Errorf("firmware.public_key: %w", err)
		}
	}
	return g, nil
}

// Plugins builds the node's plugins (the status collector with the
// gateway's own reporter, and the OTA distributor) at node time now. A
// simulated gateway node calls it again on every restart; the alert state
// carries over.
func (g *Gateway) Plugins(now time.Time) []mesh.Plugin {
	st := g.cfg.Status
	local := status.NewReporter(status.ReporterConfig{
		Interval: -1, // the collector samples it; a node cannot send itself reports
		Providers: status.Providers{
			Firmware:   func() (string, string) { return fleet.MeshfleetFirmware(Version), "" },
			FreeMemory: status.RuntimeFreeMemory,
		},
	}, now)
	c := status.NewCollector(status.CollectorConfig{
		Model: status.ModelConfig{DefaultInterval: st.ReportInterval.D(), Grace: st.OfflineAfter.D()},
		Alerts: alert.Config{
			LowMemory:    uint32(st.LowMemoryKB) * 1000,
			HighLatency:  time.Duration(st.HighLatencyMS) * time.Millisecond,
			PacketLoss:   uint16(st.PacketLossPct * 10),
			WeakRSSI:     int8(max(st.WeakWiFiDBm, -128)),
			RebootCount:  st.RebootLoopCount,
			RebootWindow: st.RebootLoopWindow.D(),
		},
		Local:         local,
		LocalInterval: st.ReportInterval.D(),
		Logger:        g.log.With("component", "status"),
	}, now)
	d := ota.NewDistributor(ota.DistributorConfig{
		AnnounceInterval: g.cfg.OTA.AnnounceInterval.D(),
		StockChunkSize:   g.cfg.OTA.ChunkSize,
		KeepFinished:     g.cfg.OTA.KeepCampaigns,
		LostAfter:        g.cfg.OTA.LostAfter.D(),
		// A queued node that runs the image already is not updated again.
		Running: func(node uint32) (string, bool) {
			st, ok := c.Model().Node(node)
			return st.Metrics.FirmwareMD5, ok && st.Metrics.FirmwareMD5 != ""
		},
		Compress: func(method string, img []byte) ([]byte, error) {
			m, err := compress.ParseMethod(method)
			if err != nil {
				return nil, err
			}
			return compress.Compress(m, img)
		},
		Logger: g.log.With("component", "ota"),
	})
	g.mu.Lock()
	if g.alertData != nil {
		if err := c.Alerts().Restore(g.alertData); err != nil {
			g.log.Warn("alert state not restored", "err", err)
		}
	}
	g.collector, g.dist = c, d
	resume := g.resumableLocked()
	g.mu.Unlock()
	g.rollouts.bind(now, c, d)
	// Campaigns that were running when the gateway stopped start again;
	// receivers resume from the chunks they already hold. Start needs the
	// node, so this waits until the node attaches the distributor.
	start := func() {
		for _, s := range resume {
			spec, err := g.specFor(s)
			if err == nil {
				_, err = d.Start(now, spec)
			}
			if err != nil {
				g.log.Warn("campaign not resumed", "campaign", s.ID, "err", err)
				g.fail(s.ID, now, "not resumed after a restart: "+err.Error())
				continue
			}
			if s.State == ota.CampaignPaused {
				d.Pause(now, s.ID)
			}
		}
	}
	return []mesh.Plugin{local, c, &resumingDistributor{Distributor: d, resume: start}, g.newHistoryRecorder(c, d), g.rollouts}
}

// resumingDistributor is the distributor as a node plugin: once attached
// to the node it restarts the campaigns of the previous run.
type resumingDistributor struct {
	*ota.Distributor
	resume func()
}

// Attach implements mesh.Plugin.
func (r *resumingDistributor) Attach(h mesh.Host) {
	r.Distributor.Attach(h)
	if r.resume != nil {
		r.resume()
		r.resume = nil
	}
}

func (g *Gateway) resumableLocked() []ota.CampaignSnapshot {
	var out []ota.CampaignSnapshot
	for _, s := range sortedSnapshots(g.history) {
		if s.State == ota.CampaignRunning || s.State == ota.CampaignPaused {
			out = append(out, s)
		}
	}
	return out
}

// failOrphans ends the saved campaigns that were running or paused but
// whose image is gone from the firmware store: they cannot run again, and
// listing them as running would be a lie.
func (g *Gateway) failOrphans(now time.Time) {
	g.mu.Lock()
	resume := g.resumableLocked()
	g.mu.Unlock()
	for _, s := range resume {
		if _, err := g.imageOf(s); errors.Is(err, fleet.ErrNotFound) {
			g.log.Warn("campaign failed: its image is gone", "campaign", s.ID, "md5", s.Image.MD5)
			g.fail(s.ID, now, fmt.Sprintf("image %s no longer in the firmware store", s.Image.MD5))
		}
	}
}

// fail gives the saved campaign id the final state failed.
func (g *Gateway) fail(id string, now time.Time, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.history[id]
	s.State, s.Reason, s.Finished = ota.CampaignFailed, reason, now
	g.history[id] = s
	g.dirty = true
}

// imageOf finds a campaign's image: by its target role and hardware, else
// by md5 alone (a campaign may target another role than the image's).
func (g *Gateway) imageOf(s ota.CampaignSnapshot) (firmware.Image, error) {
	img, err := g.store.Lookup(s.Image.MD5, s.Targets.Role, s.Targets.Hardware)
	if errors.Is(err, firmware.ErrNotFound) {
		return g.findImage(s.Image.MD5)
	}
	return img, err
}

func (g *Gateway) specFor(s ota.CampaignSnapshot) (ota.CampaignSpec, error) {
	img, err := g.imageOf(s)
	if err != nil {
		return ota.CampaignSpec{}, err
	}
	data, err := g.store.ReadAll(img.ID)
	if err != nil {
		return ota.CampaignSpec{}, err
	}
	return ota.CampaignSpec{ID: s.ID, Mode: s.Mode, Method: s.Method, Nodes: listedAndQueued(s.Targets), MaxConcurrent: s.Targets.MaxConcurrent,
		Forced: s.Forced, Progress: s.Nodes,
		Image: ota.Image{MD5: img.MD5, Role: s.Targets.Role, Hardware: s.Targets.Hardware, Version: img.Version, Data: data, Signature: img.Signature,
			Manifest: img.Manifest, ManifestSig: img.ManifestSig}}, nil
}

// RunTCP joins the mesh over TCP as configured and runs until ctx ends.
func (g *Gateway) RunTCP(ctx context.Context) error {
	if err := g.cfg.ValidateTCP(); err != nil {
		return err
	}
	d, err := tcp.New(tcp.Config{
		Node:           mesh.Config{ID: g.cfg.Node.ID, Root: g.cfg.Node.Root, ContainsRoot: g.cfg.Node.Root, TimeAuthority: g.cfg.Node.TimeAuthority},
		Plugins:        g.Plugins(time.Now()),
		Listen:         g.cfg.Node.Listen,
		Connect:        g.cfg.Node.Connect,
		MaxMessageSize: g.cfg.Node.MaxMessageSize,
		MaxConnections: g.cfg.Node.MaxConnections,
		Backoff:        g.tcpBackoff,
		Logger:         g.log.With("component", "mesh"),
	})
	if err != nil {
		return err
	}
	return g.Run(ctx, d)
}

// Run serves MQTT, HTTP and the event stream around a node driven by d,
// until ctx ends; then it saves its state and stops everything.
func (g *Gateway) Run(ctx context.Context, d Driver) error {
	g.mu.Lock()
	g.driver = d
	g.mu.Unlock()
	g.openHistory()
	defer g.closeHistory()
	// Components run on their own context so that, when the caller's ends,
	// the final state can still be read from the running node first.
	outer := ctx
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-outer.Done():
		case <-ctx.Done():
		}
		if err := g.saveState(); err != nil {
			g.log.Error("saving state", "err", err)
		}
		cancel()
	}()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.Run(ctx); err != nil {
			errc <- fmt.Errorf("mesh: %w", err)
		}
		cancel()
	}()
	wg.Add(1)
	go func() { defer wg.Done(); g.consume(ctx, d.Events()) }()

	if g.cfg.HTTP.Listen != "" {
		srv, ln, err := g.httpServer()
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		g.HTTPAddr = ln.Addr().String()
		g.log.Info("http listening", "addr", g.HTTPAddr, "dashboard", "http://"+g.HTTPAddr+"/", "api", "http://"+g.HTTPAddr+"/api/v1/nodes", "metrics", g.cfg.HTTP.Metrics)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
		}()
	}
	if g.cfg.MQTT.Enabled {
		if err := g.startMQTT(ctx, &wg); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.persistLoop(ctx)
	}()
	close(g.ready)

	<-ctx.Done()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (g *Gateway) httpServer() (*http.Server, net.Listener, error) {
	mux := http.NewServeMux()
	stopStreams := make(chan struct{})
	api := rest.Handler(g, rest.Config{Token: g.cfg.HTTP.Token, MaxUploadSize: g.cfg.Firmware.MaxUploadSize,
		MaxConcurrentUploads: g.cfg.Firmware.MaxConcurrentUploads, Logger: g.log, Stream: rest.StreamConfig{
			MaxClients: g.cfg.HTTP.Stream.MaxClients, Interval: g.cfg.HTTP.Stream.Interval.D(), WriteTimeout: g.cfg.HTTP.Stream.WriteTimeout.D(),
			Stop: stopStreams}})
	mux.Handle("/api/", api)
	mux.Handle("/healthz", api)
	mux.Handle("/", web.Handler()) // the dashboard; its data comes from /api/ with the token
	if g.cfg.HTTP.Metrics {
		reg := prom.NewRegistry(g, g.cfg.Mesh.ID)
		reg.MustRegister(newGatewayCollector(g), newHistoryCollector(g))
		var metrics http.Handler = prom.Handler(reg)
		if g.cfg.HTTP.MetricsNeedToken() {
			metrics = rest.RequireToken(g.cfg.HTTP.Token, metrics)
		}
		mux.Handle("/metrics", metrics)
	}
	ln, err := net.Listen("tcp", g.cfg.HTTP.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("http.listen %s: %w", g.cfg.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { close(stopStreams) })
	return srv, ln, nil
}

func (g *Gateway) startMQTT(ctx context.Context, wg *sync.WaitGroup) error {
	m := g.cfg.MQTT
	url := m.URL
	var broker *mqttbridge.Broker // embedded; closed after the bridge's goodbye
	if url == "" {
		bc, err := g.cfg.brokerConfig()
		if err != nil {
			return err
		}
		b, err := mqttbridge.StartBrokerWith(bc, g.log)
		if err != nil {
			return fmt.Errorf("mqtt.embedded: %w", err)
		}
		broker = b
		g.MQTTAddr = b.Addr()
		// The gateway's own client: random credentials on the broker's
		// internal loopback listener, not the configured ones.
		url = b.InternalURL()
		m.Username, m.Password, m.TLS = bc.Gateway.Username, bc.Gateway.Password, TLSConfig{}
		g.log.Info("embedded mqtt broker", "addr", b.Addr(), "url", b.URL(), "users", len(bc.Users), "tls", bc.TLS.CertFile != "")
		if len(bc.Users) == 0 {
			g.log.Warn("embedded mqtt broker accepts anonymous clients (no mqtt.embedded.users)", "addr", b.Addr())
		} else if bc.TLS.CertFile == "" && !isLoopback(m.Embedded.Listen) {
			g.log.Warn("embedded mqtt broker takes passwords without TLS beyond loopback; set mqtt.embedded.tls", "addr", b.Addr())
		}
	}
	// Uploads over MQTT are staged on disk, never in memory.
	uploadDir := filepath.Join(g.cfg.StateDir, "uploads")
	if err := mqttbridge.PrepareUploadDir(uploadDir); err != nil {
		if broker != nil {
			broker.Close()
		}
		return fmt.Errorf("state_dir: %w", err)
	}
	var bridge atomic.Pointer[mqttbridge.Bridge] // set after Dial; OnUp may run before
	// The client outlives ctx: when ctx ends the bridge still publishes
	// "offline", and only then does Close disconnect. Dialled with ctx, the
	// client could disconnect first, leaving "online" retained.
	client, err := mqttbridge.Dial(context.WithoutCancel(ctx), mqttbridge.ClientConfig{
		URL: url, Username: m.Username, Password: m.Password,
		CAFile: m.TLS.CAFile, CertFile: m.TLS.CertFile, KeyFile: m.TLS.KeyFile, InsecureSkipVerify: m.TLS.InsecureSkipVerify,
		ClientID: g.cfg.MQTTClientID(), WillTopic: mqttbridge.WillTopic(g.cfg.TopicRoot()), WillPayload: mqttbridge.WillPayload(),
		OnUp: func() {
			g.setMQTTUp(true)
			if b := bridge.Load(); b != nil {
				b.OnConnect(ctx)
			}
		},
		OnDown: func() { g.setMQTTUp(false) },
		Logger: g.log.With("component", "mqtt"),
	})
	if err != nil {
		if broker != nil {
			broker.Close()
		}
		return err
	}
	b := mqttbridge.NewBridge(g, client, mqttbridge.BridgeConfig{
		Prefix: g.cfg.TopicRoot(), SharedPrefix: m.Prefix, MeshID: g.cfg.MeshID(), HAScope: g.cfg.Mesh.ID, PublishInterval: m.PublishInterval.D(),
		Nodes: m.Topics.Nodes, Topology: m.Topics.Topology, Metrics: m.Topics.Metrics, Alerts: m.Topics.Alerts,
		PerNode: m.Topics.PerNode, Messages: m.Topics.Messages, HomeAssistant: m.HomeAssistant.Enabled, HAPrefix: m.HomeAssistant.Prefix,
		DeviceID: fmt.Sprint(g.cfg.Node.ID), Version: fleet.MeshfleetFirmware(Version), MaxUploadSize: g.cfg.Firmware.MaxUploadSize,
		Logger: g.log.With("component", "mqtt"),

		// Security: the embedded broker vouches for who sent a request.
		UploadsPerClient: m.Uploads.PerClient, UploadIdle: m.Uploads.IdleTimeout.D(), TrustSender: broker != nil, MayRead: mayRead(broker),
		UploadDir: uploadDir, UploadRoom: g.uploadRoom,
	})
	bridge.Store(b)
	g.mqttBridge.Store(b)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Run(ctx)
		client.Close(context.Background())
		if broker != nil {
			<-ctx.Done() // b.Run may have returned early; the broker serves until the gateway stops
			broker.Close()
		}
	}()
	return nil
}

// uploadRoom refuses an MQTT upload at upload_begin whose declared size
// does not fit in the firmware store's quota.
func (g *Gateway) uploadRoom(size int64) error {
	if err := g.store.CheckRoom(size); err != nil {
		return fmt.Errorf("%w (firmware.max_store_size); remove images no campaign needs (meshfleet firmware remove ID, or DELETE /api/v1/firmware/{id}) or raise the limit: %w",
			err, fleet.ErrStoreFull)
	}
	return nil
}

// mayRead is the embedded broker's read ACL, nil for an external broker.
func mayRead(b *mqttbridge.Broker) func(user, topic string) bool {
	if b == nil {
		return nil
	}
	return b.MayRead
}

func (g *Gateway) setMQTTUp(up bool) {
	g.mu.Lock()
	g.mqttUp = up
	g.mu.Unlock()
}

// MQTTConnected reports whether the bridge's client is connected.
func (g *Gateway) MQTTConnected() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mqttUp
}

// consume turns the node's events into fleet events and notes state to save.
func (g *Gateway) consume(ctx context.Context, events <-chan mesh.Event) {
	for {
		var ev mesh.Event
		var ok bool
		select {
		case <-ctx.Done():
			return
		case ev, ok = <-events:
			if !ok {
				return
			}
		}
		switch e := ev.(type) {
		case mesh.MessageReceived:
			g.fan.publish(fleet.Event{Message: &fleet.Message{From: e.From, Broadcast: e.Type == 8, Type: e.Type, Payload: e.Msg, Received: time.Now().UTC()}})
		case mesh.PackageReceived:
			g.fan.publish(fleet.Event{Message: &fleet.Message{From: e.Header.From, Broadcast: e.Header.Routing == 2, Type: e.Header.Type, Payload: string(e.JSON), Received: time.Now().UTC()}})
		case status.AlertEvent:
			a := g.acks.apply(alertView(e.Alert))
			g.markDirty()
			g.fan.publish(fleet.Event{Alert: &a})
		case ota.CampaignEvent:
			g.markDirty()
			if e.Node != 0 {
				p := progressView(e.Campaign, e.Progress)
				g.fan.publish(fleet.Event{Progress: &p})
			} else if c, err := g.Campaign(ctx, e.Campaign); err == nil {
				g.fan.publish(fleet.Event{Campaign: &c})
			} else if ctx.Err() == nil {
				g.log.Warn("campaign change not published", "campaign", e.Campaign, "err", err)
			}
		}
	}
}

func (g *Gateway) markDirty() {
	g.mu.Lock()
	g.dirty = true
	g.mu.Unlock()
}

// errNotRunning: Run has not started the node loop yet.
var errNotRunning = fmt.Errorf("gateway is not running: %w", fleet.ErrConflict)

// loopWaitCap bounds a wait for the node's loop when the caller's ctx
// has no deadline of its own.
const loopWaitCap = 10 * time.Second

// do runs fn in the node's loop with the gateway's plugins. When the loop
// does not take fn before ctx (or loopWaitCap) ends, or has stopped, the
// error is fleet.ErrUnavailable wrapping why.
func (g *Gateway) do(ctx context.Context, fn func(now time.Time, n *mesh.Node, c *status.Collector, d *ota.Distributor)) error {
	g.mu.Lock()
	drv := g.driver
	g.mu.Unlock()
	if drv == nil {
		return errNotRunning
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, loopWaitCap)
		defer cancel()
	}
	if err := drv.Do(ctx, func(now time.Time, n *mesh.Node) {
		g.mu.Lock()
		c, d := g.collector, g.dist
		g.mu.Unlock()
		fn(now, n, c, d)
	}); err != nil {
		return fmt.Errorf("%w: %w", fleet.ErrUnavailable, err)
	}
	return nil
}

// stateFile names the files the gateway persists in state_dir.
const (
	campaignsFile = "campaigns.json"
	alertsFile    = "alerts.json"
	saveEvery     = time.Second
)

func (g *Gateway) persistLoop(ctx context.Context) {
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.persistTick(ctx)
		}
	}
}

// persistTick is the persist loop's work of one second: the registry
// learns what the node saw, and changed state is saved.
func (g *Gateway) persistTick(ctx context.Context) {
	if err := g.observeNow(ctx); err != nil && ctx.Err() == nil {
		g.log.Debug("device registry not updated", "err", err)
	}
	if err := g.saveRegistry(false); err != nil {
		g.log.Error("saving state", "err", err)
	}
	g.mu.Lock()
	dirty := g.dirty
	g.dirty = false
	g.mu.Unlock()
	if dirty {
		if err := g.saveState(); err != nil {
			g.log.Error("saving state", "err", err)
		}
	}
}

// saveState writes campaigns and alerts atomically. It reads them from the
// node's loop while the driver runs, else from what it last saw.
func (g *Gateway) saveState() error {
	var alerts []byte
	snaps := map[string]ota.CampaignSnapshot{}
	err := g.do(context.Background(), func(_ time.Time, _ *mesh.Node, c *status.Collector, d *ota.Distributor) {
		if c != nil {
			alerts, _ = c.Alerts().MarshalJSON()
		}
		if d != nil {
			for _, cp := range d.Campaigns() {
				snaps[cp.ID] = cp.Snapshot()
			}
		}
	})
	g.mu.Lock()
	if err == nil {
		for id, s := range snaps {
			g.history[id] = keepStart(g.history[id], s)
		}
		g.pruneHistoryLocked()
		if alerts != nil {
			g.alertData = alerts
		}
	}
	hist := g.savedCampaignsLocked()
	alerts = g.alertData
	g.mu.Unlock()
	if err := writeJSONFile(filepath.Join(g.cfg.StateDir, campaignsFile), hist); err != nil {
		return err
	}
	if alerts != nil {
		if err := writeFileAtomic(filepath.Join(g.cfg.StateDir, alertsFile), alerts); err != nil {
			return err
		}
	}
	if err := g.saveRollouts(); err != nil {
		return err
	}
	return g.saveRegistry(true)
}
