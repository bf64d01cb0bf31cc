package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/registry"
	"github.com/meshfleet/meshfleet/status"
)

var _ fleet.Service = (*Gateway)(nil)

// snapshot is one consistent read of the node and its plugins.
type snapshot struct {
	now       time.Time
	self      uint32
	tree      protocol.NodeTree
	states    []status.NodeState
	health    status.Health
	alerts    []alert.Alert
	recent    []alert.Alert
	campaigns []ota.CampaignSnapshot
	registry  []registry.Entry
}

func (g *Gateway) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	err := g.do(ctx, func(now time.Time, n *mesh.Node, c *status.Collector, d *ota.Distributor) {
		s.now, s.self, s.tree = now, n.ID(), n.Tree()
		s.states = c.Model().Nodes()
		s.health = c.Health()
		g.observe(now, s.states)
		s.alerts = c.Alerts().Active()
		s.recent = c.Alerts().Recent()
		for _, cp := range d.Campaigns() {
			s.campaigns = append(s.campaigns, cp.Snapshot())
		}
	})
	if err != nil {
		return snapshot{}, err // s is not ours: a driver may run fn after ctx ended
	}
	s.registry = g.registry.reg.All()
	return s, nil
}

func (s snapshot) nodes() []fleet.Node {
	health := map[uint32]int{}
	for _, h := range s.health.Nodes {
		health[h.Node] = h.Score
	}
	ota := map[uint32]*fleet.Progress{}
	for _, c := range s.campaigns {
		for _, p := range c.Nodes {
			v := progressView(c.ID, p)
			ota[p.Node] = &v
		}
	}
	out := make([]fleet.Node, 0, len(s.states))
	for _, st := range s.states {
		m := st.Metrics
		n := fleet.Node{
			ID: st.ID, Status: "offline", Gateway: st.ID == s.self, Role: m.Role, Hardware: m.Hardware,
			Firmware: m.FirmwareVersion, FirmwareMD5: m.FirmwareMD5, UptimeS: uint64(m.Uptime), FreeMemory: uint64(m.FreeMemory),
			RSSI: int(m.RSSI), WiFi: int(m.WiFi), LatencyMS: float64(m.LatencyUs) / 1000, LossPct: float64(m.LossPermille) / 10,
			Connections: int(m.Connections), MessagesRx: uint64(m.MessagesRx), MessagesTx: uint64(m.MessagesTx),
			Dropped: uint64(m.MessagesDropped), AlertFlags: uint8(m.Alerts), Health: health[st.ID], Source: string(st.Source),
			OTA: ota[st.ID],
		}
		if st.Online {
			n.Status = "online"
		}
		if !st.LastSeen.IsZero() {
			n.LastSeen = st.LastSeen.UTC()
		}
		if st.Hops >= 0 {
			h := st.Hops
			n.Hops = &h
		}
		if m.FreeMemory == math.MaxUint32 {
			// Saturated (RuntimeFreeMemory on a host with 4 GiB or more
			// free): the 32-bit field cannot say how much.
			n.FreeMemory = 0
		}
		if st.ID == s.self {
			n.Root = s.tree.Root
		}
		out = append(out, n)
	}
	return registered(out, s.registry)
}

// Nodes implements fleet.Service.
func (g *Gateway) Nodes(ctx context.Context) ([]fleet.Node, error) {
	s, err := g.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s.nodes(), nil
}

// Node implements fleet.Service.
func (g *Gateway) Node(ctx context.Context, id uint32) (fleet.Node, error) {
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return fleet.Node{}, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return fleet.Node{}, fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
}

// Topology implements fleet.Service: the gateway node's real layout.
func (g *Gateway) Topology(ctx context.Context) (protocol.NodeTree, error) {
	var t protocol.NodeTree
	if err := g.do(ctx, func(_ time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) { t = n.Tree() }); err != nil {
		return protocol.NodeTree{}, err // t is not ours: fn may still run
	}
	return t, nil
}

// Summary implements fleet.Service.
func (g *Gateway) Summary(ctx context.Context) (fleet.Summary, error) {
	s, err := g.snapshot(ctx)
	if err != nil {
		return fleet.Summary{}, err
	}
	return s.summary(g.started), nil
}

// summary counts the nodes as s.nodes() lists them (fleet.CountNodes).
func (s snapshot) summary(started time.Time) fleet.Summary {
	total, online := fleet.CountNodes(s.nodes())
	return fleet.Summary{NodeCount: total, OnlineCount: online, HealthScore: s.health.Score,
		ActiveAlerts: len(s.alerts), MaxHops: s.health.MaxHops, GatewayID: s.self,
		GatewayUptimeS: uint64(time.Since(started) / time.Second), Timestamp: s.now.UTC()}
}

// Alerts implements fleet.Service.
func (g *Gateway) Alerts(ctx context.Context, includeCleared bool) ([]fleet.Alert, error) {
	s, err := g.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := []fleet.Alert{}
	for _, a := range s.alerts {
		out = append(out, alertView(a))
	}
	if includeCleared {
		for _, a := range s.recent {
			out = append(out, alertView(a))
		}
	}
	g.acks.applyAll(out)
	return out, nil
}

func alertView(a alert.Alert) fleet.Alert {
	v := fleet.Alert{ID: a.ID, NodeID: a.Node, Type: a.Type(), Severity: a.Severity.String(), Message: a.Message,
		Value: a.Value, Threshold: a.Threshold, State: "raised", Raised: a.Raised.UTC(), Updated: a.Updated.UTC()}
	if a.Updates > 0 {
		v.State = "updated"
	}
	if !a.Active {
		v.State = "cleared"
		c := a.Cleared.UTC()
		v.Cleared = &c
	}
	return v
}

func progressView(campaign string, p ota.NodeProgress) fleet.Progress {
	return fleet.Progress{NodeID: p.Node, Campaign: campaign, State: string(p.State), Chunks: p.Done, Total: p.Total,
		Bytes: p.Bytes, BytesAll: p.BytesTotal, RateBps: p.Rate, ETAS: p.ETA.Seconds(), Error: p.Err, Updated: p.Updated.UTC(),
		Estimated: p.Estimated}
}

func imageView(img firmware.Image) fleet.Image {
	v := fleet.Image{ID: img.ID, Role: img.Role, Hardware: img.Hardware, Version: img.Version, MD5: img.MD5,
		Size: img.Size, Signed: img.Signed(), Added: img.Added.UTC()}
	for m := range img.Variants {
		v.Variants = append(v.Variants, m)
	}
	sort.Strings(v.Variants)
	return v
}

// Images implements fleet.Service. The store is local: ctx is not needed.
func (g *Gateway) Images(_ context.Context) ([]fleet.Image, error) {
	imgs, err := g.store.List()
	if err != nil {
		return nil, err
	}
	out := make([]fleet.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageView(img))
	}
	return out, nil
}

// AddImage implements fleet.Service. The image streams from r into the
// store, which hashes it as it goes and checks the sender's md5 and size.
func (g *Gateway) AddImage(ctx context.Context, up fleet.ImageUpload, r io.Reader) (fleet.Image, bool, error) {
	img, err := g.store.Add(ctx, r, firmware.Meta{Role: up.Role, Hardware: up.Hardware, Version: up.Version},
		firmware.AddOptions{MD5: up.MD5, Size: up.Size})
	switch {
	case err == nil:
		return imageView(img), false, nil
	case errors.Is(err, firmware.ErrExists) && img.Version == up.Version:
		return imageView(img), true, nil // the same image again: nothing to do
	case errors.Is(err, firmware.ErrExists):
		return fleet.Image{}, false, fmt.Errorf("%w; an image has one version: start campaigns with image %s, or remove it first to store these bytes as version %s: %w",
			err, img.ID, up.Version, fleet.ErrConflict)
	case errors.Is(err, firmware.ErrVersionExists):
		return fleet.Image{}, false, fmt.Errorf("%w; a version names one image: upload this one under a new version, or remove image %s first: %w",
			err, img.ID, fleet.ErrConflict)
	case errors.Is(err, firmware.ErrTooLarge):
		return fleet.Image{}, false, fmt.Errorf("%w (firmware.max_upload_size): %w", err, fleet.ErrTooLarge)
	case errors.Is(err, firmware.ErrStoreFull):
		return fleet.Image{}, false, fmt.Errorf("%w (firmware.max_store_size); remove images no campaign needs (DELETE /api/v1/firmware/{id}, or meshfleet firmware remove ID) or raise the limit: %w",
			err, fleet.ErrStoreFull)
	case errors.Is(err, firmware.ErrMD5Mismatch), errors.Is(err, firmware.ErrEmpty), errors.Is(err, firmware.ErrInvalidMeta):
		return fleet.Image{}, false, fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
	}
	// Reading the upload failed (the sender went away, a transport limit
	// was hit) or the disk did: the caller's transport knows which.
	return fleet.Image{}, false, err
}

// RemoveImage implements fleet.Service.
func (g *Gateway) RemoveImage(ctx context.Context, id string) error {
	g.imageUse.Lock()
	defer g.imageUse.Unlock()
	img, err := g.store.Get(id)
	switch {
	case errors.Is(err, firmware.ErrNotFound):
		return fmt.Errorf("image %q: %w", id, fleet.ErrNotFound)
	case errors.Is(err, firmware.ErrInvalidID):
		return fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
	case err != nil:
		return err
	}
	campaigns, err := g.Campaigns(ctx)
	if err != nil {
		// Without the running campaigns the image may be in use.
		return err
	}
	for _, c := range campaigns {
		// Matched by md5: a campaign may target another role or hardware
		// than the image's own.
		if (c.State == string(ota.CampaignRunning) || c.State == string(ota.CampaignPaused)) && c.Image.MD5 == img.MD5 {
			return fmt.Errorf("image %s is in use by campaign %s (%s); abort it first: %w", id, c.ID, c.State, fleet.ErrConflict)
		}
	}
	if err := g.store.Remove(id); err != nil {
		if errors.Is(err, firmware.ErrNotFound) {
			return fmt.Errorf("image %q: %w", id, fleet.ErrNotFound)
		}
		return err
	}
	return nil
}

func (g *Gateway) findImage(ref string) (firmware.Image, error) {
	if img, err := g.store.Get(ref); err == nil {
		return img, nil
	}
	imgs, err := g.store.List()
	if err != nil {
		return firmware.Image{}, err
	}
	for _, img := range imgs {
		if img.MD5 == ref {
			return img, nil
		}
	}
	return firmware.Image{}, fmt.Errorf("image %q: %w", ref, fleet.ErrNotFound)
}

// StartCampaign implements fleet.Service.
func (g *Gateway) StartCampaign(ctx context.Context, req fleet.CampaignRequest) (fleet.Campaign, error) {
	if req.Image == "" {
		return fleet.Campaign{}, fmt.Errorf("campaign needs an image id: %w", fleet.ErrInvalid)
	}
	g.imageUse.Lock()
	defer g.imageUse.Unlock()
	img, err := g.findImage(req.Image)
	if err != nil {
		return fleet.Campaign{}, err
	}
	role, hw := img.Role, img.Hardware
	if req.Role != "" {
		role = req.Role
	}
	if req.Hardware != "" {
		hw = req.Hardware
	}
	m, err := ota.ParseMode(g.campaignMode(ctx, req, role, hw))
	if err != nil {
		return fleet.Campaign{}, fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
	}
	method := req.Compress
	if method == "" {
		method = g.cfg.OTA.Compress
		if m == ota.ModeStockTurbo {
			method = firmware.MethodNone // stock receivers cannot decompress
		}
	}
	// "none" sends the image itself; it is not a stored variant, so
	// ValidateMethod (which names variants) rejects it.
	if method != firmware.MethodNone {
		if err := firmware.ValidateMethod(method); err != nil {
			return fleet.Campaign{}, fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
		}
	}
	if g.publicKey != nil {
		if err := g.store.VerifySignature(img.ID, g.publicKey); err != nil {
			return fleet.Campaign{}, fmt.Errorf("image %s is not signed by firmware.public_key: %w: %w", img.ID, err, fleet.ErrInvalid)
		}
	}
	data, err := g.store.ReadAll(img.ID)
	if err != nil {
		return fleet.Campaign{}, err
	}
	nodes, err := g.campaignNodes(ctx, req, img.MD5, role, hw, m)
	if err != nil {
		return fleet.Campaign{}, err
	}
	spec := ota.CampaignSpec{Mode: m, Method: method, Nodes: nodes, MaxConcurrent: req.MaxConcurrent, Forced: req.Forced,
		Image: ota.Image{MD5: img.MD5, Role: role, Hardware: hw, Version: img.Version, Data: data, Signature: img.Signature,
			Manifest: img.Manifest, ManifestSig: img.ManifestSig}}
	var id string
	var serr error
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, _ *status.Collector, d *ota.Distributor) {
		c, err := d.Start(now, spec)
		if err != nil {
			serr = err
			return
		}
		id = c.ID
	}); err != nil {
		return fleet.Campaign{}, err
	}
	if serr != nil {
		return fleet.Campaign{}, fmt.Errorf("%w: %w", serr, fleet.ErrInvalid)
	}
	g.mu.Lock()
	g.imageMeta[id] = imageView(img)
	g.mu.Unlock()
	g.markDirty()
	// Done: its result is read even if ctx ends meanwhile (do bounds it).
	return g.Campaign(context.WithoutCancel(ctx), id)
}

// Campaigns implements fleet.Service: running ones and those that ended.
func (g *Gateway) Campaigns(ctx context.Context) ([]fleet.Campaign, error) {
	s, err := g.snapshot(ctx)
	if err != nil && !errors.Is(err, errNotRunning) {
		// The history alone would hide the running campaigns (before Run
		// there are none: the history is all there is).
		return nil, err
	}
	g.mu.Lock()
	all := map[string]ota.CampaignSnapshot{}
	for id, h := range g.history {
		all[id] = h
	}
	g.mu.Unlock()
	for _, c := range s.campaigns {
		all[c.ID] = keepStart(all[c.ID], c)
	}
	var out []fleet.Campaign
	for _, c := range sortedSnapshots(all) {
		out = append(out, g.campaignView(c))
	}
	return out, nil
}

// Campaign implements fleet.Service.
func (g *Gateway) Campaign(ctx context.Context, id string) (fleet.Campaign, error) {
	campaigns, err := g.Campaigns(ctx)
	if err != nil {
		return fleet.Campaign{}, err
	}
	for _, c := range campaigns {
		if c.ID == id {
			return c, nil
		}
	}
	return fleet.Campaign{}, fmt.Errorf("campaign %q: %w", id, fleet.ErrNotFound)
}

func (g *Gateway) campaignView(c ota.CampaignSnapshot) fleet.Campaign {
	v := fleet.Campaign{ID: c.ID, Mode: string(c.Mode), Compress: c.Method, State: string(c.State), Reason: c.Reason, Started: c.Started.UTC(),
		Targets: listedAndQueued(c.Targets), Nodes: map[string]fleet.Progress{}, Total: len(c.Nodes),
		MaxConcurrent: c.Targets.MaxConcurrent, Queued: len(c.Targets.Queue), Queue: c.Targets.Queue}
	g.mu.Lock()
	stored, known := g.imageMeta[c.ID]
	g.mu.Unlock()
	if img, err := g.store.Lookup(c.Image.MD5, c.Targets.Role, c.Targets.Hardware); err == nil {
		v.Image = imageView(img)
		if !known { // a campaign saved before images were recorded
			g.mu.Lock()
			g.imageMeta[c.ID] = v.Image
			g.dirty = true
			g.mu.Unlock()
		}
	} else if known {
		v.Image = stored
	} else {
		// Saved by a version that did not keep the image's record: what
		// the campaign itself knows.
		v.Image = fleet.Image{MD5: c.Image.MD5, Role: c.Targets.Role, Hardware: c.Targets.Hardware,
			Version: c.Image.Version, Size: c.Image.Size, Signed: len(c.Image.Signature) > 0}
	}
	if !c.Finished.IsZero() {
		f := c.Finished.UTC()
		v.Finished = &f
	}
	for _, p := range c.Nodes {
		v.Nodes[strconv.FormatUint(uint64(p.Node), 10)] = progressView(c.ID, p)
		switch p.State {
		case ota.StateConfirmed, ota.StateInstalled:
			v.Completed++
		case ota.StateFailed, ota.StateRolledBack, ota.StateRefused, ota.StateLost:
			v.Failed++
		}
	}
	return v
}

func (g *Gateway) control(ctx context.Context, id string, fn func(now time.Time, d *ota.Distributor) error) (fleet.Campaign, error) {
	var cerr error
	running := true
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, _ *status.Collector, d *ota.Distributor) {
		if _, running = d.Campaign(id); running {
			cerr = fn(now, d)
		}
	}); err != nil {
		return fleet.Campaign{}, err
	}
	if !running {
		cerr = g.endedCampaign(id)
	}
	if cerr != nil {
		if !errors.Is(cerr, fleet.ErrNotFound) {
			cerr = fmt.Errorf("%w: %w", cerr, fleet.ErrConflict)
		}
		return fleet.Campaign{}, cerr
	}
	g.markDirty()
	// Done: its result is read even if ctx ends meanwhile (do bounds it).
	return g.Campaign(context.WithoutCancel(ctx), id)
}

// endedCampaign is the error for controlling a campaign the distributor
// does not hold: one that ended in an earlier run (a conflict, with its
// state and reason), or none at all.
func (g *Gateway) endedCampaign(id string) error {
	g.mu.Lock()
	s, ok := g.history[id]
	g.mu.Unlock()
	if !ok {
		return fmt.Errorf("campaign %q: %w", id, fleet.ErrNotFound)
	}
	why := ""
	if s.Reason != "" {
		why = " (" + s.Reason + ")"
	}
	return fmt.Errorf("campaign %s is %s%s; only a running or paused campaign can be paused, resumed or aborted", id, s.State, why)
}

// PauseCampaign implements fleet.Service.
func (g *Gateway) PauseCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return g.control(ctx, id, func(now time.Time, d *ota.Distributor) error { return d.Pause(now, id) })
}

// ResumeCampaign implements fleet.Service.
func (g *Gateway) ResumeCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return g.control(ctx, id, func(now time.Time, d *ota.Distributor) error { return d.Resume(now, id) })
}

// AbortCampaign implements fleet.Service.
func (g *Gateway) AbortCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return g.control(ctx, id, func(now time.Time, d *ota.Distributor) error { return d.Abort(now, id) })
}

// admitSend checks an application package against send.max_size, the
// airtime budget and the sender's share of it (fleet.SenderOf(ctx)). pkg
// encodes it; msg alone is checked first, so a huge message is refused
// without another copy of it.
func (g *Gateway) admitSend(ctx context.Context, msg string, pkg protocol.Package) error {
	if len(msg) > g.sends.maxSize {
		return g.sends.admit(fleet.SenderOf(ctx), len(msg))
	}
	return g.sends.admit(fleet.SenderOf(ctx), len(pkg.AppendJSON(nil)))
}

// SendBroadcast implements fleet.Service.
func (g *Gateway) SendBroadcast(ctx context.Context, msg string) error {
	if err := g.admitSend(ctx, msg, &protocol.Broadcast{From: g.cfg.Node.ID, Msg: msg}); err != nil {
		return err
	}
	return g.do(ctx, func(now time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) {
		n.SendBroadcast(now, msg, false)
	})
}

// SendSingle implements fleet.Service.
func (g *Gateway) SendSingle(ctx context.Context, dest uint32, msg string) error {
	if err := g.admitSend(ctx, msg, &protocol.Single{From: g.cfg.Node.ID, Dest: dest, Msg: msg}); err != nil {
		return err
	}
	var ok bool
	if err := g.do(ctx, func(now time.Time, n *mesh.Node, _ *status.Collector, _ *ota.Distributor) {
		ok = n.SendSingle(now, dest, msg)
	}); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("node %d is not reachable in the mesh: %w", dest, fleet.ErrNotFound)
	}
	return nil
}

// Subscribe implements fleet.Service.
func (g *Gateway) Subscribe(ctx context.Context) <-chan fleet.Event { return g.fan.subscribe(ctx) }

// keepStart gives cur, the live state of a campaign, the start time of
// prev, what an earlier run saved of it: a campaign resumed after a
// restart is the same campaign, though the distributor started it anew.
func keepStart(prev, cur ota.CampaignSnapshot) ota.CampaignSnapshot {
	if !prev.Started.IsZero() && prev.Started.Before(cur.Started) {
		cur.Started = prev.Started
	}
	return cur
}

// pruneHistoryLocked keeps the last ota.keep_campaigns campaigns that
// ended (by when they ended) and every running or paused one.
func (g *Gateway) pruneHistoryLocked() {
	var ended []ota.CampaignSnapshot
	for _, s := range g.history {
		if s.State != ota.CampaignRunning && s.State != ota.CampaignPaused {
			ended = append(ended, s)
		}
	}
	drop := len(ended) - g.cfg.OTA.KeepCampaigns
	if drop <= 0 {
		return
	}
	sort.Slice(ended, func(i, j int) bool {
		if !ended[i].Finished.Equal(ended[j].Finished) {
			return ended[i].Finished.Before(ended[j].Finished)
		}
		return ended[i].ID < ended[j].ID
	})
	for _, s := range ended[:drop] {
		delete(g.history, s.ID)
		delete(g.imageMeta, s.ID)
	}
}

// savedCampaign is one entry of the campaigns state file: the campaign
// and the record of its image (absent in files of earlier versions).
type savedCampaign struct {
	ota.CampaignSnapshot
	StoredImage *fleet.Image `json:"stored_image,omitempty"`
}

func (g *Gateway) savedCampaignsLocked() []savedCampaign {
	var out []savedCampaign
	for _, s := range sortedSnapshots(g.history) {
		sc := savedCampaign{CampaignSnapshot: s}
		if img, ok := g.imageMeta[s.ID]; ok {
			sc.StoredImage = &img
		}
		out = append(out, sc)
	}
	return out
}

func sortedSnapshots(m map[string]ota.CampaignSnapshot) []ota.CampaignSnapshot {
	out := make([]ota.CampaignSnapshot, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// loadState reads what a previous run saved. A corrupt file is an error
// that names it: silently starting empty would lose alert and campaign state.
func (g *Gateway) loadState() error {
	p := filepath.Join(g.cfg.StateDir, campaignsFile)
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("state: %w", err)
	default:
		var snaps []savedCampaign
		if err := json.Unmarshal(data, &snaps); err != nil {
			return fmt.Errorf("state file %s is corrupt (%v); move it away to start without campaign history", p, err)
		}
		for _, s := range snaps {
			g.history[s.ID] = s.CampaignSnapshot
			if s.StoredImage != nil {
				g.imageMeta[s.ID] = *s.StoredImage
			}
		}
		g.pruneHistoryLocked()
	}
	p = filepath.Join(g.cfg.StateDir, alertsFile)
	data, err = os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("state: %w", err)
	default:
		if err := alert.NewEngine(alert.Config{}).Restore(data); err != nil {
			return fmt.Errorf("state file %s is corrupt (%v); move it away to start without alert history", p, err)
		}
		g.alertData = data
	}
	return nil
}

func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// writeFileAtomic replaces path with data: temp file, fsync, rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, werr)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
