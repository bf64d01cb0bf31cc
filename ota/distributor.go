package ota

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// DistributorConfig configures a Distributor. Zero values take the
// defaults noted on each field.
type DistributorConfig struct {
	AnnounceInterval time.Duration // 60 s (stock offerOTA)
	AnnounceCount    int           // 60 announces (one hour)
	StockChunkSize   int           // 1024, the stock example's OTA_PART_SIZE
	// TurboPartSize is the part size of stock-turbo campaigns, 4096
	// (turboPartSize says why).
	TurboPartSize int
	// ChunkSize is the fast modes' chunk size. Zero picks the largest
	// power of two up to 8 KiB whose pushed copies (one per child of the
	// busiest node) fit QueueBudget, so a relay can hold one chunk for
	// every child while it sends.
	ChunkSize   int
	QueueBudget int // bytes of one pushed chunk times the busiest fan-out, 12 KiB (a third of an ESP8266 radio queue, so upstream delays that bunch chunks do not overflow it)
	Window      int // pipelined window suggested to receivers, 8
	// Radio is the airtime model the distributor paces its sends with and
	// sizes the broadcast push rate from (the busiest radio in the tree).
	Radio Radio
	// Utilization is the fraction of the busiest radio the push aims to
	// use, 0.98 (the estimate is conservative: it charges the link latency
	// to the radio too).
	Utilization float64
	// LossTarget is the per-hop loss above which the push slows down
	// (multiplicative decrease); below it the rate creeps up, 0.03.
	LossTarget float64
	// PushDelay separates the first offer from the first pushed chunk so
	// receivers know the transfer, 200 ms.
	PushDelay time.Duration
	// Unpaced answers stock DataRequests the instant they arrive, as the
	// C++ distributor does (for baseline measurements). Default: paced.
	Unpaced bool
	// StockOnly sends no offers: only stock announces, as the C++
	// distributor does (for baselines and interoperability tests). Only
	// ModeStock campaigns can run.
	StockOnly bool
	// Compress builds the transfer bytes for a method; required for any
	// method but "none".
	Compress func(method string, image []byte) ([]byte, error)
	// SettleAfter is how long a campaign for a role (no node list) waits,
	// once every node that took part reached a final state, for another
	// node to take part before it ends: 2 × AnnounceInterval, so at least
	// one more announce reaches nodes that missed the earlier ones.
	SettleAfter time.Duration
	// KeepFinished is how many campaigns that ended the distributor keeps
	// (their record, not their image); older ones are dropped. 50.
	KeepFinished int
	// MaxPackageSize bounds every package the distributor sends: a node
	// list too long for one offer is split over several offers, and the
	// fast modes' chunk size is chosen (a configured one checked) so that
	// an encoded chunk fits. 8192 bytes, MAX_MESSAGE_CAPACITY of
	// painlessMesh v6 nodes (docs/protocol.md §1.3): a relay parses and
	// re-serialises every package it forwards, and an ESP8266 one built
	// with ArduinoJson v6 drops anything larger.
	MaxPackageSize int
	Logger         *slog.Logger
	// QueueStall frees the place of a node in a campaign with
	// MaxConcurrent that sent no news for this long (queue.go), 10 min.
	QueueStall time.Duration
	// LostAfter gives a target that sends no news for this long the
	// outcome lost, so a node gone for good does not keep its campaign
	// running (campaign_lost.go), 10 min. Stock receivers keep their own
	// rules (campaign_stock.go).
	LostAfter time.Duration
	// Running, if set, says which image md5 a node runs, as far as the
	// gateway knows (its status reports): a queued node that runs the
	// campaign's image already is not updated again.
	Running func(node uint32) (md5 string, known bool)
}

func (c *DistributorConfig) defaults() {
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = 60 * time.Second
	}
	if c.AnnounceCount <= 0 {
		c.AnnounceCount = 60
	}
	if c.StockChunkSize <= 0 {
		c.StockChunkSize = 1024
	}
	if c.TurboPartSize <= 0 {
		c.TurboPartSize = turboPartSize
	}
	if c.QueueBudget <= 0 {
		c.QueueBudget = 12 << 10
	}
	if c.Window <= 0 {
		c.Window = 8
	}
	if c.Radio == (Radio{}) {
		c.Radio = DefaultRadio
	}
	if c.Utilization <= 0 || c.Utilization > 1 {
		c.Utilization = 0.98
	}
	if c.LossTarget <= 0 {
		c.LossTarget = 0.03
	}
	if c.PushDelay <= 0 {
		c.PushDelay = 200 * time.Millisecond
	}
	if c.SettleAfter <= 0 {
		c.SettleAfter = 2 * c.AnnounceInterval
	}
	if c.QueueStall <= 0 {
		c.QueueStall = defaultQueueStall
	}
	if c.LostAfter <= 0 {
		c.LostAfter = defaultLostAfter
	}
	if c.KeepFinished <= 0 {
		c.KeepFinished = 50
	}
	if c.MaxPackageSize <= 0 {
		c.MaxPackageSize = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Image is a firmware image to distribute.
type Image struct {
	MD5       string // lowercase hex md5 of Data; computed when empty
	Role      string
	Hardware  string
	Version   string
	Data      []byte
	Signature []byte
	// Manifest and ManifestSig are the image's signed manifest
	// (firmware.Manifest, as signed) and its signature; Offers carry them
	// to Go receivers, which require them when they have a public key.
	Manifest    []byte
	ManifestSig []byte
}

// CampaignSpec starts a campaign.
type CampaignSpec struct {
	ID     string // [A-Za-z0-9._-]{1,32}; default: derived from the image md5 and time
	Image  Image
	Mode   Mode   // default stock
	Method string // none | deflate | heatshrink (default none)
	Nodes  []uint32
	Forced bool
	// MaxConcurrent, with Nodes, updates at most this many of them at a
	// time; the others queue (queue.go). 0: all at once.
	MaxConcurrent int
	// StockBroadcast announces to stock receivers with broadcasted:true
	// (stock root-led broadcast, docs/protocol.md §8.5) instead of unicast.
	StockBroadcast bool
	// Progress is what an earlier run of this campaign knew of its nodes
	// (a gateway restart); it stands until the nodes report again.
	Progress []NodeProgress
}

// DistributorStats count what the distributor did.
type DistributorStats struct {
	Announces       int
	StockServed     int // type 12 sent
	ChunksServed    int // type 722 sent by unicast or to a child
	ChunksPushed    int // type 722 broadcast
	Rebroadcasts    int // chunks pushed again because many nodes missed them
	IgnoredRequests int // stock requests for nothing we announce (Q-19 f), and requests of nodes outside a campaign's list
	RateChanges     int
}

// Errors of Start.
var (
	ErrCampaignID = errors.New("ota: invalid campaign id")
	ErrNoCampaign = errors.New("ota: no such campaign")
)

var campaignIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

type dcampaign struct {
	*Campaign
	stock      *variant // uncompressed, stock chunk size: for stock receivers
	fast       *variant // what the Offer describes
	offer      Offer    // without a node list
	offers     []Offer  // what each announce sends: offer, with the node list split to fit
	stockBcast bool

	announced    int
	nextAnnounce time.Time
	// lastPartAt is when a stock receiver was last sent the last chunk
	// (stock-turbo: flooded); no announce goes out until stockRestart
	// after it (holdAnnounce).
	lastPartAt time.Time
	// announcedAt is when the last announce went out.
	announcedAt time.Time

	push  pushControl  // broadcast mode
	turbo turboControl // stock-turbo mode

	// With MaxConcurrent (queue.go): when each listed node got its place,
	// and the next time a place may fall free for want of news.
	admittedAt map[uint32]time.Time
	admitCheck time.Time

	lost lostWatch // targets gone silent (campaign_lost.go)
}

// Distributor is the OTA distributor plugin: it announces campaigns, serves
// stock DataRequests exactly as stock receivers expect, and runs the fast
// modes for Go receivers.
type Distributor struct {
	cfg       DistributorConfig
	host      mesh.Host
	campaigns []*dcampaign // in start order
	queue     []reply
	pace      pacer
	stockLink stockLink
	stats     DistributorStats
}

// NewDistributor returns a distributor plugin.
func NewDistributor(cfg DistributorConfig) *Distributor {
	cfg.defaults()
	return &Distributor{cfg: cfg, pace: pacer{radio: cfg.Radio}}
}

// Attach implements mesh.Plugin.
func (d *Distributor) Attach(h mesh.Host) { d.host = h }

// Types implements mesh.Plugin.
func (d *Distributor) Types() []int {
	return []int{protocol.TypeOTADataRequest, TypeNeed, TypeReport}
}

// Stats returns the distributor's counters.
func (d *Distributor) Stats() DistributorStats { return d.stats }

// Campaign returns a campaign by id.
func (d *Distributor) Campaign(id string) (*Campaign, bool) {
	if c := d.find(id); c != nil {
		return c.Campaign, true
	}
	return nil, false
}

// Campaigns returns every campaign in start order.
func (d *Distributor) Campaigns() []*Campaign {
	out := make([]*Campaign, len(d.campaigns))
	for i, c := range d.campaigns {
		out[i] = c.Campaign
	}
	return out
}

func (d *Distributor) find(id string) *dcampaign {
	for _, c := range d.campaigns {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// Start begins a campaign. An active campaign for the same role and
// hardware ends: as its targets' outcomes say if they are all through,
// else superseded by this one.
func (d *Distributor) Start(now time.Time, spec CampaignSpec) (*Campaign, error) {
	img := spec.Image
	if len(img.Data) == 0 {
		return nil, errors.New("ota: empty image")
	}
	sum := md5.Sum(img.Data)
	got := hex.EncodeToString(sum[:])
	if img.MD5 == "" {
		img.MD5 = got
	} else if img.MD5 != got {
		return nil, fmt.Errorf("ota: image md5 %s does not match its bytes (%s)", img.MD5, got)
	}
	if img.Role == "" || img.Hardware == "" {
		return nil, errors.New("ota: image needs a role and a hardware")
	}
	if err := firmware.ValidateRole(img.Role); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	mode := spec.Mode
	if mode == "" {
		mode = ModeStock
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	method := spec.Method
	if method == "" {
		method = "none"
	}
	if mode == ModeStockTurbo && len(spec.Nodes) > 0 {
		// Every stock node of the role writes what it sees flooded.
		return nil, errors.New("ota: a stock-turbo transfer reaches every node of the role; it cannot have a node list")
	}
	if spec.StockBroadcast && len(spec.Nodes) > 0 {
		// The stock root-led broadcast floods every node of the role.
		return nil, errors.New("ota: a stock broadcast transfer reaches every node of the role; it cannot have a node list")
	}
	if mode == ModeStockTurbo && method != "none" {
		return nil, fmt.Errorf("ota: stock receivers cannot decompress; stock-turbo sends the image as it is, not %s", method)
	}
	targets := Targets{Role: img.Role, Hardware: img.Hardware, Nodes: slices.Clone(spec.Nodes)}
	if spec.MaxConcurrent != 0 {
		var err error
		if targets.Nodes, targets.Queue, err = queueTargets(spec); err != nil {
			return nil, err
		}
		targets.MaxConcurrent = spec.MaxConcurrent
	}
	if d.cfg.StockOnly && (mode != ModeStock && mode != ModeStockTurbo || method != "none") {
		return nil, fmt.Errorf("ota: a stock-only distributor runs stock campaigns without compression, not %s/%s", mode, method)
	}
	id := spec.ID
	if id == "" {
		base := fmt.Sprintf("%s-%x", img.MD5[:8], uint32(now.UnixNano()/1e6))
		id = base
		// Two starts of one image in the same millisecond.
		for n := 2; d.find(id) != nil; n++ {
			id = fmt.Sprintf("%s.%d", base, n)
		}
	}
	if !campaignIDRE.MatchString(id) {
		return nil, fmt.Errorf("%w %q", ErrCampaignID, id)
	}
	if d.find(id) != nil {
		return nil, fmt.Errorf("%w %q: already used", ErrCampaignID, id)
	}
	if method != "none" && d.cfg.Compress == nil {
		return nil, fmt.Errorf("ota: no compressor configured for %q", method)
	}
	cs, enc := d.cfg.ChunkSize, EncDense
	if cs <= 0 {
		cs = d.autoChunkSize()
	}
	stockCS := d.stockPartSize(mode)
	if mode == ModeStock || mode == ModeStockTurbo {
		cs, enc = stockCS, EncBase64
	}
	if err := d.checkPackageSize(id, img, cs, enc, stockCS); err != nil {
		return nil, err
	}
	stock := d.sharedVariant(img.MD5, "none", stockCS)
	if stock == nil {
		stock = newVariant(img.Data, stockCS, img.MD5, "none")
	}
	fast := d.sharedVariant(img.MD5, method, cs)
	switch {
	case fast != nil:
	case method == "none" && cs == stockCS:
		fast = stock
	case method == "none":
		fast = newVariant(stock.data, cs, img.MD5, method)
	default:
		payload, err := d.cfg.Compress(method, stock.data)
		if err != nil {
			return nil, fmt.Errorf("ota: compress image %s with %s: %w", img.MD5, method, err)
		}
		fast = newVariant(payload, cs, img.MD5, method)
	}
	c := &dcampaign{
		Campaign: &Campaign{
			ID: id, Mode: mode, Method: method, Forced: spec.Forced, State: CampaignRunning, Started: now,
			Image:   ImageInfo{MD5: img.MD5, Role: img.Role, Hardware: img.Hardware, Version: img.Version, Size: int64(len(img.Data)), Signature: img.Signature},
			Targets: targets,
			nodes:   map[uint32]*NodeProgress{},
			quiet:   d.cfg.SettleAfter,
		},
		stock:      stock,
		fast:       fast,
		stockBcast: spec.StockBroadcast || mode == ModeStockTurbo,
		push:       newPushControl(),
		admittedAt: map[uint32]time.Time{},
	}
	for _, p := range spec.Progress {
		if c.Targeted(p.Node) {
			// Bytes held before this start came at a rate of their own.
			p.rateFrom, p.rateBase = now, p.Bytes
			if p.Estimated && !p.Terminal() {
				// A stock receiver's silence counts from here: without it
				// the node would stay downloading for ever if it never
				// asked again (it installed while we were down).
				p.stock = stockSeen{asked: now, resumed: true}
			}
			c.put(&p)
		}
	}
	c.stockNext = c.stockDeadline(now)
	c.noteChange(now)
	c.offer = Offer{
		From: d.host.ID(), Routing: int(protocol.RouteBroadcast), ID: id, MD5: img.MD5, Role: img.Role,
		Hardware: img.Hardware, Version: img.Version, Size: int64(len(img.Data)), Mode: string(mode),
		Method: method, TSize: int64(len(c.fast.data)), TMD5: c.fast.md5, ChunkSize: cs, Chunks: c.fast.chunks,
		Encoding: enc, Forced: spec.Forced,
	}
	if mode == ModePipelined {
		c.offer.Window = d.cfg.Window
	}
	if len(img.Signature) > 0 {
		c.offer.Signature = base64.StdEncoding.EncodeToString(img.Signature)
	}
	if len(img.Manifest) > 0 {
		// Receivers check the role and hardware; a manifest that does not
		// even describe these bytes would only fail everywhere.
		m, err := firmware.ParseManifest(img.Manifest)
		if err == nil {
			err = m.Matches(img.Data)
		}
		if err != nil {
			return nil, fmt.Errorf("ota: image %s: %w", img.MD5, err)
		}
		c.offer.Manifest = base64.StdEncoding.EncodeToString(img.Manifest)
		c.offer.ManifestSig = base64.StdEncoding.EncodeToString(img.ManifestSig)
	}
	d.listOffers(c)
	for _, old := range d.campaigns {
		if old.Active() && old.Image.Role == img.Role && old.Image.Hardware == img.Hardware {
			// One whose targets are all through ends as they did; only
			// one that is cut short is superseded.
			if old.conclude(now) {
				d.finish(now, old, old.State, old.Reason)
			} else {
				d.finish(now, old, CampaignSuperseded, "superseded by campaign "+id)
			}
		}
	}
	d.campaigns = append(d.campaigns, c)
	for _, id := range c.Targets.Nodes {
		c.admittedAt[id] = now // listed again after a restart: in flight from now
	}
	d.admit(now, c)
	c.nextAnnounce = now
	c.lost.restart(now, d.cfg.LostAfter)
	// A broadcast push waits for a receiver that accepted the offer: into
	// a mesh of stock receivers it would only flood chunks nobody reads.
	c.push.awaiting = mode == ModeBroadcast
	if mode == ModeStockTurbo {
		c.turbo = d.newTurbo(now, c.stock.chunks)
	}
	d.emit(c, 0, NodeProgress{})
	if c.settle(now) {
		d.finish(now, c, c.State, c.Reason)
	}
	d.Tick(now)
	return c.Campaign, nil
}

func (d *Distributor) emit(c *dcampaign, node uint32, p NodeProgress) {
	if d.host != nil {
		d.host.Emit(CampaignEvent{Campaign: c.ID, State: c.State, Node: node, Progress: p})
	}
}
