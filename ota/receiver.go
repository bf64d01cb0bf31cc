package ota

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// ReceiverConfig configures a Receiver. Zero durations take the defaults
// noted on each field.
type ReceiverConfig struct {
	Role     string // this node's role (stock initOTAReceive(role))
	Hardware string // "ESP32", "ESP8266", "linux/arm64", ...
	Store    Store
	// PublicKey, when set, makes the receiver install only images whose
	// Offer carries a manifest signed with it (firmware.Manifest) that
	// names this node's role and hardware and a security counter at least
	// the store's (or is a signed downgrade); the image's SHA-256 must
	// match the manifest. Images without a manifest (signed the older
	// way, over the image only, or not at all) and stock announces are
	// refused.
	PublicKey ed25519.PublicKey
	// RequireSigned refuses every image while PublicKey is nil, instead
	// of installing unverified ones (a node that runs what it installs).
	RequireSigned bool
	// Root mirrors stock setRoot(true): only a root receiver leads a
	// stock broadcast transfer (docs/protocol.md §8.5).
	Root bool
	// Radio paces the chunks this node serves to its children.
	Radio Radio

	RequestRetry  time.Duration // stock request retry, 30 s
	RequestTries  int           // stock sends per part before waiting for the next announce, 10
	BroadcastWait time.Duration // stock broadcast: no data this long → request ourselves, 60 s

	Window      int           // pipelined: chunks outstanding, default the offer's or 8
	NeedWindow  int           // broadcast: repair chunks outstanding, 16
	NeedTimeout time.Duration // broadcast: repair wait before asking again, 1 s
	// PostPushTimeout is the repair wait once the push is over, until a
	// round trip has been measured, 300 ms (about seven chunk airtimes on
	// an ESP8266: a parent serving a few siblings first still answers).
	PostPushTimeout time.Duration
	IdleTimeout     time.Duration // broadcast: no chunk this long while incomplete → ask, at most 6 s (4 push gaps)
	ReportInterval  time.Duration // progress reports to the distributor, 10 s
	ProgressEvery   time.Duration // progress events while downloading, 1 s
	MaxFailures     int           // verification failures per transfer before backing off, 3
	// FailureBackoff is how long a transfer that failed verification
	// MaxFailures times in a row is left alone before the next offer or
	// announce of it is taken up again, 5 min; it doubles with every
	// such round, up to MaxFailureBackoff (1 h).
	FailureBackoff    time.Duration
	MaxFailureBackoff time.Duration

	// SelfTest decides whether a freshly switched image is healthy; it is
	// asked SelfTestDelay after boot. Nil: the application must call
	// Confirm (a Linux node's restarted process reports in) before the
	// store's deadline, or the image rolls back.
	SelfTest      func(md5 string) bool
	SelfTestDelay time.Duration
	// Restart, when set, is called after a switch or a rollback so the
	// driver restarts the node into the other slot (a new Receiver then
	// boots it). Nil: the receiver boots the new slot in place.
	Restart func(now time.Time)

	Seed   uint64 // jitter source (deterministic)
	Logger *slog.Logger
}

func (c *ReceiverConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RequestRetry, 30*time.Second)
	def(&c.BroadcastWait, 60*time.Second)
	def(&c.NeedTimeout, time.Second)
	def(&c.PostPushTimeout, 300*time.Millisecond)
	def(&c.IdleTimeout, 6*time.Second)
	def(&c.ReportInterval, 10*time.Second)
	def(&c.ProgressEvery, time.Second)
	def(&c.FailureBackoff, 5*time.Minute)
	def(&c.MaxFailureBackoff, time.Hour)
	if c.RequestTries <= 0 {
		c.RequestTries = 10
	}
	if c.NeedWindow <= 0 {
		c.NeedWindow = 16
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = 3
	}
	if c.Radio == (Radio{}) {
		c.Radio = DefaultRadio
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Receiver is the OTA receiver plugin: it speaks the stock protocol to any
// distributor and our extensions to ours, stages chunks in the slot store,
// verifies, switches, and confirms or rolls back.
type Receiver struct {
	cfg  ReceiverConfig
	host mesh.Host
	rng  *rand.Rand

	state State
	cur   *rxTransfer
	// done is the transfer that last completed here: while the store can
	// still read its chunks, it answers children's repair asks, so a
	// relay that finishes first does not send its children to the
	// distributor.
	done   *rxTransfer
	failed map[string]*failures // transfer id → verification failures

	// offered maps image md5 → the offer that carries it, so the stock
	// announce of the same image is left to stock receivers.
	offered map[string]string
	// refused maps transfer id → why its offer was refused (reported to
	// its distributor with every offer, as an event once).
	refused map[string]string

	// trial image after a switch
	trial         bool
	trialDeadline time.Time
	selfTestAt    time.Time
	pending       *outcome // a trial's outcome not yet delivered
	reportedIDs   map[string]bool
	rolledBack    string // md5 that rolled back this boot or the last

	// trialOrigin is where the running trial image came from, when known.
	trialOrigin *Origin

	offerAsked time.Time // no new offer request before

	out      []queued // paced sends (repairs for children)
	pace     pacer
	lastProg time.Time
	lastEv   Progress
	stats    ReceiverStats
	asked    []int // every chunk index asked for, in order (tests)
}

// ReceiverStats count what the receiver sent, for tests and benchmarks.
type ReceiverStats struct {
	StockRequests  int // type 11 sent
	NeedsSent      int // type 721 sent
	ChunksAsked    int // chunks named in those
	ChunksServed   int // chunks sent to children
	DuplicateChunk int // chunks received that were already held
	Rejected       int // packages that did not match what we download
	Refused        int // offers refused by the manifest checks
}

// outcome is the final report of a trial (confirmed or rolled back).
type outcome struct {
	rep   *Report
	md5   string // the image it is about
	dist  uint32 // distributor of that image's transfer; 0: unknown yet
	retry time.Time
}

// rollbackReason is reported for a rollback found at boot: the store
// does not say whether the self test failed or the deadline passed.
const rollbackReason = "new image was not confirmed (self test failed or confirm deadline passed); rolled back"

// finalRetry spaces attempts to deliver an outcome while the distributor
// is unreachable (the node has not joined the mesh yet).
const finalRetry = 5 * time.Second

type queued struct {
	pkg   protocol.Package
	bytes int
}

type rxTransfer struct {
	id     string
	offer  Offer // for stock announces: derived (ChunkSize 0 until known)
	fromOf bool  // came from an Offer (reports allowed)
	stock  bool  // stock wire: types 11/12
	bcast  bool  // stock broadcasted flag
	mode   Mode
	dist   uint32
	dl     Download
	have   *Bitmap
	bytes  int64
	start  time.Time
	early  map[int][]byte // stock: chunks held before the chunk size is known
	// manifest is the verified manifest of the image (nil without a
	// public key): the store checks its SHA-256 and keeps its counter.
	manifest *firmware.Manifest

	// stock request loop
	reqPart  int
	reqTries int
	reqNext  time.Time
	stalled  bool
	waitTill time.Time // stock broadcast: wait for pushed data until

	// pipelined
	outstanding map[int]time.Time // chunk → re-ask deadline
	sentAt      map[int]time.Time
	srtt, rttv  time.Duration

	// broadcast
	hi            int
	lost          int
	lastChunk     time.Time
	lastPush      time.Time
	gap           time.Duration // smoothed gap between pushed chunks
	ended         bool          // the push is over (End seen or the push went idle)
	want          map[int]*ask
	nextAsk       time.Time
	parentRefused bool
	children      map[int][]uint32 // chunk → children waiting for it
	// repairRTT and repairVar estimate the post-push repair round trip.
	repairRTT, repairVar time.Duration
	nextReport           time.Time
}

type ask struct {
	deadline time.Time
	tries    int
	asked    bool
	sentAt   time.Time // first ask after the push ended (RTT sample), or zero
}

// NewReceiver boots the store (a trial image after a switch must confirm
// itself) and returns the plugin.
func NewReceiver(cfg ReceiverConfig, now time.Time) (*Receiver, error) {
	if cfg.Store == nil {
		return nil, errors.New("ota: receiver needs a store")
	}
	cfg.defaults()
	r := &Receiver{
		cfg:         cfg,
		state:       StateIdle,
		failed:      map[string]*failures{},
		offered:     map[string]string{},
		refused:     map[string]string{},
		reportedIDs: map[string]bool{},
		pace:        pacer{radio: cfg.Radio},
	}
	r.rng = rand.New(rand.NewPCG(cfg.Seed, 0x6f7461))
	if err := r.boot(now); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Receiver) boot(now time.Time) error {
	trial, deadline, err := r.cfg.Store.Boot(now)
	if err != nil {
		return fmt.Errorf("ota: boot slot store: %w", err)
	}
	origin, hasOrigin := Origin{}, false
	if keep, ok := r.cfg.Store.(OriginStore); ok {
		origin, hasOrigin = keep.Origin()
	}
	if md5, ok := r.cfg.Store.LastRollback(); ok {
		r.rolledBack = md5
		r.state = StateRolledBack
		switch {
		case hasOrigin && origin.Image == md5 && origin.Reported:
			// Reported before the restart.
		case hasOrigin && origin.Image == md5:
			r.pending = &outcome{md5: md5, dist: origin.Distributor, retry: now,
				rep: &Report{ID: origin.Transfer, State: string(StateRolledBack), Error: rollbackReason}}
		default:
			r.pending = &outcome{md5: md5, rep: &Report{State: string(StateRolledBack), Error: rollbackReason}}
		}
	}
	if trial {
		if active, _ := r.cfg.Store.Active(); hasOrigin && origin.Image == active && !origin.Reported {
			r.trialOrigin = &origin
		}
		r.trial = true
		r.trialDeadline = deadline
		r.state = StateSwitching
		if r.cfg.SelfTest != nil {
			r.selfTestAt = now.Add(r.cfg.SelfTestDelay)
		}
	}
	return nil
}

// Attach implements mesh.Plugin.
func (r *Receiver) Attach(h mesh.Host) {
	r.host = h
	r.rng = rand.New(rand.NewPCG(r.cfg.Seed, uint64(h.ID())))
}

// Types implements mesh.Plugin.
func (r *Receiver) Types() []int {
	return []int{protocol.TypeOTAAnnounce, protocol.TypeOTAData, TypeOffer, TypeNeed, TypeChunk, TypeRefuse, TypeEnd}
}

// State is the receiver's current state.
func (r *Receiver) State() State { return r.state }

// Stats returns the receiver's counters.
func (r *Receiver) Stats() ReceiverStats { return r.stats }

// Downloading reports the transfer in progress, if any: id, chunks held
// and total.
func (r *Receiver) Downloading() (id string, have, total int, ok bool) {
	if r.cur == nil {
		return "", 0, 0, false
	}
	return r.cur.id, r.cur.have.Count(), r.cur.have.Len(), true
}

// Confirm is how a running trial image reports itself healthy (the
// restarted process calls it once it is up).
func (r *Receiver) Confirm(now time.Time) error {
	if !r.trial {
		return nil
	}
	if err := r.cfg.Store.Confirm(now); err != nil {
		return fmt.Errorf("ota: confirm: %w", err)
	}
	r.trial = false
	md5, _ := r.cfg.Store.Active()
	r.setState(now, StateConfirmed, "")
	r.final(now, &Report{State: string(StateConfirmed), Active: md5}, md5)
	return nil
}

// HandlePackage implements mesh.Plugin.
func (r *Receiver) HandlePackage(now time.Time, conn mesh.ConnID, h protocol.Header, raw []byte) {
	var err error
	switch h.Type {
	case protocol.TypeOTAAnnounce:
		err = r.onAnnounce(now, raw)
	case protocol.TypeOTAData:
		err = r.onStockData(now, raw)
	case TypeOffer:
		err = r.onOffer(now, raw)
	case TypeChunk:
		err = r.onChunk(now, h, raw)
	case TypeNeed:
		err = r.onNeed(now, h, raw)
	case TypeRefuse:
		err = r.onRefuse(now, h, raw)
	case TypeEnd:
		err = r.onEnd(now, raw)
	}
	if err != nil {
		r.stats.Rejected++
		r.cfg.Logger.Debug("ota receiver: package ignored", "type", h.Type, "from", h.From, "err", err)
	}
}

func (r *Receiver) installedOrBlocked(md5 string, forced bool) bool {
	active, confirmed := r.cfg.Store.Active()
	if md5 == r.rolledBack {
		return true // never flash an image that just failed its health check again
	}
	// Q-19(c): stock re-flashes on every forced announce. Forced means
	// "install even if the md5 matches", which only makes sense while the
	// running image is not a confirmed copy of exactly that image.
	if md5 == active && (!forced || confirmed) {
		return true
	}
	return r.trial
}

func (r *Receiver) onAnnounce(now time.Time, raw []byte) error {
	a, err := decodeStock(raw)
	if err != nil {
		return err
	}
	if a.Role != r.cfg.Role || a.Hardware != r.cfg.Hardware {
		return nil
	}
	if _, ok := r.offered[a.MD5]; ok {
		return nil // our distributor: the offer carries it
	}
	if r.cfg.PublicKey != nil || r.cfg.RequireSigned {
		// A stock announce cannot carry a manifest.
		return fmt.Errorf("%w: stock announce of %s from node %d: this node installs only images with a signed manifest", errRefused, a.MD5, a.From)
	}
	if !validMD5(a.MD5) || a.NoPart == 0 || a.NoPart > 1<<22 {
		return fmt.Errorf("%w: announce md5 %q noPart %d", ErrMalformed, a.MD5, a.NoPart)
	}
	if r.installedOrBlocked(a.MD5, a.Forced) {
		return nil
	}
	id := "stock:" + a.MD5
	if t := r.cur; t != nil && t.offer.MD5 == a.MD5 {
		if t.stock && t.stalled {
			t.stalled = false
			t.reqTries = 0
			t.reqNext = now
		}
		return nil
	}
	if r.backingOff(now, id) {
		return nil
	}
	t := &rxTransfer{
		id:    id,
		stock: true,
		bcast: a.Broadcasted,
		mode:  ModeStock,
		dist:  a.From,
		start: now,
		offer: Offer{ID: id, MD5: a.MD5, TMD5: a.MD5, Role: a.Role, Hardware: a.Hardware,
			Chunks: int(a.NoPart), Method: "none", Forced: a.Forced, Encoding: EncBase64, Mode: string(ModeStock)},
		have:  NewBitmap(int(a.NoPart)),
		early: map[int][]byte{},
	}
	// "compressed" is only a flag in stock (Q-19 g): a stock distributor
	// sends raw bytes under it, so the transfer is the image itself.
	if ss, ok := r.cfg.Store.(StagedStore); ok {
		if st, ok := ss.Staged(); ok && st.Image == a.MD5 && st.TransferMD5 == a.MD5 && st.Chunks == int(a.NoPart) && st.Method == "none" {
			// Resuming after a restart: the staged transfer knows the
			// chunk size the stock announce does not say.
			t.offer.ChunkSize, t.offer.TSize, t.offer.Size = st.ChunkSize, st.TransferSize, st.ImageSize
		}
	}
	r.start(now, t)
	return nil
}

func (r *Receiver) onOffer(now time.Time, raw []byte) error {
	o, err := DecodeOffer(raw)
	if err != nil {
		return err
	}
	if o.Role != r.cfg.Role || o.Hardware != r.cfg.Hardware {
		return nil
	}
	r.offered[o.MD5] = o.ID
	if !o.For(r.host.ID()) {
		// The campaign lists other nodes. Knowing the offer keeps the
		// stock announce of the image and its pushed chunks from
		// starting a download here.
		if t := r.cur; t != nil && !t.fromOf && t.offer.MD5 == o.MD5 {
			// Started from the stock announce, whose requests will go
			// unanswered.
			if t.dl != nil {
				_ = t.dl.Flush()
			}
			r.cur = nil
			r.setState(now, StateIdle, "")
		}
		return nil
	}
	if p := r.pending; p != nil && (p.dist == 0 && p.md5 == o.MD5 || p.dist != 0 && p.rep.ID == o.ID) {
		// The outcome belongs to this offer's transfer: an outcome of
		// another image is never reported to another campaign.
		p.rep.ID, p.dist, p.retry = o.ID, o.From, time.Time{}
		if State(p.rep.State) == StateConfirmed {
			r.reportedIDs[o.ID] = true
		}
		r.deliver(now)
	}
	if r.installedOrBlocked(o.MD5, o.Forced) {
		active, _ := r.cfg.Store.Active()
		if active == o.MD5 && !r.reportedIDs[o.ID] && !r.trial {
			r.reportedIDs[o.ID] = true
			r.sendReport(now, o.From, &Report{ID: o.ID, State: string(StateConfirmed), Active: active})
		}
		return nil
	}
	if t := r.cur; t != nil && t.id == o.ID {
		t.dist = o.From
		if t.stock && t.stalled {
			t.stalled, t.reqTries, t.reqNext = false, 0, now
		}
		return nil
	}
	if r.backingOff(now, o.ID) {
		return nil
	}
	m, err := r.checkManifest(o)
	if err != nil {
		r.refuse(now, o, err)
		return nil
	}
	mode, _ := ParseMode(o.Mode)
	t := &rxTransfer{
		id:       o.ID,
		offer:    *o,
		fromOf:   true,
		stock:    mode == ModeStock,
		mode:     mode,
		dist:     o.From,
		start:    now,
		have:     NewBitmap(o.Chunks),
		manifest: m,
	}
	r.start(now, t)
	return nil
}

// start replaces any transfer in progress (a newer image supersedes) and
// opens the download, resuming staged chunks of the same transfer.
func (r *Receiver) start(now time.Time, t *rxTransfer) {
	if old := r.cur; old != nil {
		r.cfg.Logger.Info("ota receiver: superseded", "old", old.id, "new", t.id)
		if old.dl != nil {
			_ = old.dl.Flush()
		}
	}
	r.cur = t
	r.done = nil
	t.outstanding = map[int]time.Time{}
	t.sentAt = map[int]time.Time{}
	t.want = map[int]*ask{}
	t.children = map[int][]uint32{}
	t.lastChunk = now
	t.nextReport = now.Add(time.Duration(r.rng.Int64N(int64(r.cfg.ReportInterval))))
	if t.offer.ChunkSize > 0 {
		if err := r.open(t); err != nil {
			r.fail(now, err)
			return
		}
	}
	r.setState(now, StateDownloading, "")
	switch {
	case t.stock && t.bcast && !r.cfg.Root:
		t.waitTill = now.Add(r.cfg.BroadcastWait)
	case t.stock:
		t.reqPart = t.have.NextMissing(0)
		t.reqNext = now
	}
	if t.fromOf {
		r.sendReport(now, t.dist, r.progressReport())
	}
	r.tickTransfer(now)
}

func (r *Receiver) open(t *rxTransfer) error {
	o := &t.offer
	size := o.TSize
	tr := Transfer{
		Image: o.MD5, ImageSize: o.Size, Method: o.Method, TransferSize: size, TransferMD5: o.TMD5,
		ChunkSize: o.ChunkSize, Chunks: o.Chunks, Signature: decodeSig(o.Signature),
		Version: o.Version, Role: o.Role, Hardware: o.Hardware,
	}
	if m := t.manifest; m != nil {
		tr.SHA256, tr.Counter, tr.Version = m.SHA256, m.Counter, m.Version
	}
	dl, err := r.cfg.Store.Begin(tr)
	if err != nil {
		return fmt.Errorf("ota: begin %s: %w", t.id, err)
	}
	t.dl = dl
	for i := 0; i < o.Chunks; i++ {
		if dl.Has(i) {
			t.have.Set(i)
			t.bytes += int64(o.ChunkSize)
		}
	}
	for i, data := range t.early {
		r.write(t, i, data)
	}
	t.early = nil
	return nil
}

func decodeSig(s string) []byte {
	if s == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return []byte{0} // present but unreadable: verification must fail
	}
	return b
}

func (r *Receiver) onStockData(now time.Time, raw []byte) error {
	t := r.cur
	if t == nil || !t.stock {
		return nil
	}
	d, err := decodeStock(raw)
	if err != nil {
		return err
	}
	wantCompressed := t.offer.Method != "none"
	if d.MD5 != t.offer.MD5 || d.Role != t.offer.Role || d.Hardware != t.offer.Hardware ||
		int(d.NoPart) != t.offer.Chunks || d.Compressed != wantCompressed && t.fromOf {
		return nil
	}
	if d.Routing == int(protocol.RouteSingle) && d.Dest != r.host.ID() {
		return nil
	}
	if d.From != t.dist {
		return fmt.Errorf("%w: stock data of %s from node %d, not the distributor %d", ErrUntrusted, t.id, d.From, t.dist)
	}
	i := int(d.PartNo)
	if i >= t.offer.Chunks {
		return fmt.Errorf("%w: partNo %d of %d", ErrMalformed, i, t.offer.Chunks)
	}
	data := protocol.DecodeBase64Lenient(d.Data)
	if t.offer.ChunkSize == 0 {
		// Stock receivers never see the chunk size; any chunk but the last
		// has exactly that length.
		if i < t.offer.Chunks-1 || t.offer.Chunks == 1 {
			t.offer.ChunkSize = len(data)
			if t.offer.Chunks == 1 {
				t.offer.TSize = int64(len(data))
				t.offer.Size = t.offer.TSize
			}
			if len(data) == 0 {
				return fmt.Errorf("%w: empty chunk %d", ErrMalformed, i)
			}
			t.early[i] = data
			if err := r.open(t); err != nil {
				r.fail(now, err)
				return nil
			}
		} else {
			t.early[i] = data
			return nil
		}
	} else {
		r.write(t, i, data)
	}
	t.lastChunk = now
	if t.bcast && !r.cfg.Root && t.reqNext.IsZero() {
		t.waitTill = now.Add(r.cfg.BroadcastWait)
	}
	if t.have.Has(t.reqPart) {
		// The part we asked for arrived: ask for the next one at once, as
		// stock does, from our own state (never in another node's name).
		t.reqPart = t.have.NextMissing(0)
		t.reqTries = 0
		t.stalled = false
		if !t.reqNext.IsZero() {
			t.reqNext = now
		}
	}
	r.afterWrite(now, t)
	return nil
}

func (r *Receiver) write(t *rxTransfer, i int, data []byte) {
	if t.have.Has(i) {
		r.stats.DuplicateChunk++
		return
	}
	o := &t.offer
	if o.ChunkSize > 0 {
		last := i == o.Chunks-1
		if !last && len(data) != o.ChunkSize || last && (len(data) == 0 || len(data) > o.ChunkSize) {
			r.stats.Rejected++
			return
		}
		if last && o.TSize == 0 {
			o.TSize = int64(o.ChunkSize)*int64(o.Chunks-1) + int64(len(data))
		}
	}
	if t.dl == nil {
		return
	}
	if err := t.dl.WriteChunk(i, data); err != nil {
		r.cfg.Logger.Warn("ota receiver: write chunk", "transfer", t.id, "chunk", i, "err", err)
		return
	}
	t.have.Set(i)
	t.bytes += int64(len(data))
	delete(t.outstanding, i)
	delete(t.want, i)
	if kids := t.children[i]; len(kids) > 0 {
		delete(t.children, i)
		for _, c := range kids {
			r.serve(t, c, i, data)
		}
	}
}

func (r *Receiver) onChunk(now time.Time, h protocol.Header, raw []byte) error {
	t := r.cur
	if h.Routing == protocol.RouteBroadcast {
		// Every broadcast chunk leaves this node once per child: count the
		// airtime so our own repairs do not overflow the radio.
		r.pace.busy(now, len(raw), r.childCount(h.From))
	}
	c, err := DecodeChunk(raw)
	if err != nil {
		return err
	}
	if t == nil || t.stock || c.ID != t.id {
		r.missedOffer(now, h.From, c.ID)
		return nil
	}
	if !r.trustedSender(t, h) {
		return fmt.Errorf("%w: chunk %d of %s from node %d, neither the distributor %d nor our parent", ErrUntrusted, c.Index, c.ID, h.From, t.dist)
	}
	if c.Index >= t.offer.Chunks {
		return fmt.Errorf("%w: chunk %d of %d", ErrMalformed, c.Index, t.offer.Chunks)
	}
	data, err := decodePayload(t.offer.Encoding, c.Data)
	if err != nil {
		return err
	}
	if h.Routing == protocol.RouteBroadcast {
		if c.Index > t.hi {
			for j := t.hi; j < c.Index; j++ {
				if !t.have.Has(j) {
					t.lost++
					r.addWant(t, j)
				}
			}
		}
		if c.Index >= t.hi {
			t.hi = c.Index + 1
		}
		if !t.lastPush.IsZero() {
			g := now.Sub(t.lastPush)
			if t.gap == 0 {
				t.gap = g
			} else {
				t.gap = (7*t.gap + g) / 8
			}
		}
		t.lastPush = now
	}
	if at, ok := t.sentAt[c.Index]; ok {
		r.sampleRTT(t, now.Sub(at))
		delete(t.sentAt, c.Index)
	}
	if a := t.want[c.Index]; a != nil && h.Routing != protocol.RouteBroadcast && a.tries == 1 && !a.sentAt.IsZero() {
		sampleRepairRTT(t, now.Sub(a.sentAt))
	}
	t.lastChunk = now
	r.write(t, c.Index, data)
	r.afterWrite(now, t)
	return nil
}

func decodePayload(enc, s string) ([]byte, error) {
	if enc == EncDense {
		return Dense.DecodeString(s)
	}
	return protocol.DecodeBase64Lenient(s), nil
}

func encodePayload(enc string, b []byte) string {
	if enc == EncDense {
		return Dense.EncodeToString(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (r *Receiver) sampleRTT(t *rxTransfer, d time.Duration) {
	if t.srtt == 0 {
		t.srtt, t.rttv = d, d/2
		return
	}
	diff := t.srtt - d
	if diff < 0 {
		diff = -diff
	}
	t.rttv = (3*t.rttv + diff) / 4
	t.srtt = (7*t.srtt + d) / 8
}

func (r *Receiver) rto(t *rxTransfer) time.Duration {
	if t.srtt == 0 {
		return 5 * time.Second // no sample yet
	}
	d := t.srtt + 4*t.rttv
	return min(max(d, 500*time.Millisecond), 60*time.Second)
}

// idle is how long a broadcast receiver waits for the next pushed chunk
// before it takes the push for ended (its tail or the End lost) and asks
// for everything it misses: eight push gaps, at least a second, at most
// IdleTimeout. A relay that is merely late must not make its children ask
// for chunks the push has not reached yet.
func (r *Receiver) idle(t *rxTransfer) time.Duration {
	if t.gap == 0 {
		return r.cfg.IdleTimeout
	}
	return min(max(8*t.gap, time.Second), r.cfg.IdleTimeout)
}

func (r *Receiver) addWant(t *rxTransfer, i int) {
	if t.have.Has(i) {
		return
	}
	if _, ok := t.want[i]; !ok {
		t.want[i] = &ask{}
	}
}

// missedOffer asks distributor from for the offer of transfer id when its
// chunks arrive but its offer did not (it was lost on the way). Only
// offers we have never seen are asked for, at most every two seconds.
func (r *Receiver) missedOffer(now time.Time, from uint32, id string) {
	if from == 0 || id == "" || now.Before(r.offerAsked) {
		return
	}
	if t := r.cur; t != nil && t.id == id {
		return
	}
	for _, known := range r.offered {
		if known == id {
			return
		}
	}
	r.offerAsked = now.Add(2 * time.Second)
	_ = r.host.SendPackage(now, &Need{From: r.host.ID(), Dest: from, Routing: int(protocol.RouteSingle), ID: id})
}

func (r *Receiver) onEnd(now time.Time, raw []byte) error {
	t := r.cur
	if t == nil || t.stock || t.mode != ModeBroadcast {
		if e, err := DecodeEnd(raw); err == nil {
			r.missedOffer(now, e.From, e.ID)
		}
		return nil
	}
	e, err := DecodeEnd(raw)
	if err != nil {
		return err
	}
	if e.ID != t.id {
		r.missedOffer(now, e.From, e.ID)
		return nil
	}
	for j := t.hi; j < t.offer.Chunks; j++ {
		if !t.have.Has(j) {
			t.lost++
		}
	}
	t.hi = t.offer.Chunks
	r.pushEnded(now, t)
	r.tickTransfer(now)
	return nil
}

// pushEnded asks for everything still missing once the push is over. The
// asks made during the push waited behind it on every relay's radio, so
// their backoff says nothing about loss: it starts again, and asks still
// in flight are given the shorter post-push timeout.
func (r *Receiver) pushEnded(now time.Time, t *rxTransfer) {
	if t.ended {
		return
	}
	t.ended = true
	for j := t.have.NextMissing(0); j >= 0; j = t.have.NextMissing(j + 1) {
		r.addWant(t, j)
	}
	for _, a := range t.want {
		a.tries = 0
		a.sentAt = time.Time{}
		if d := now.Add(r.askTimeout(t)); a.asked && a.deadline.After(d) {
			a.deadline = d
		}
	}
}

// sampleRepairRTT folds one post-push repair round trip into the
// estimate (RFC 6298 gains).
func sampleRepairRTT(t *rxTransfer, d time.Duration) {
	if t.repairRTT == 0 {
		t.repairRTT, t.repairVar = d, d/2
		return
	}
	diff := t.repairRTT - d
	if diff < 0 {
		diff = -diff
	}
	t.repairVar = (3*t.repairVar + diff) / 4
	t.repairRTT = (7*t.repairRTT + d) / 8
}

// onRefuse turns to the distributor when the parent does not hold the
// transfer (it never took part, or finished and dropped it). The asks the
// parent will not answer go out again at once: waiting out their
// deadlines would cost a NeedTimeout for nothing.
func (r *Receiver) onRefuse(now time.Time, h protocol.Header, raw []byte) error {
	t := r.cur
	if t == nil || t.stock || h.Dest != r.host.ID() {
		return nil
	}
	f, err := DecodeRefuse(raw)
	if err != nil {
		return err
	}
	if f.ID != t.id {
		return nil
	}
	t.parentRefused = true
	for _, a := range t.want {
		if a.asked {
			a.asked = false
			a.deadline = now
		}
	}
	r.tickTransfer(now)
	return nil
}

// onNeed serves a child's repair request from our own copy.
func (r *Receiver) onNeed(now time.Time, h protocol.Header, raw []byte) error {
	if h.Dest != r.host.ID() {
		return nil
	}
	n, err := DecodeNeed(raw)
	if err != nil {
		return err
	}
	t := r.cur
	if t == nil || t.stock || t.id != n.ID || t.dl == nil {
		if r.serveDone(n) {
			r.flush(now)
			return nil
		}
		r.send(&Refuse{From: r.host.ID(), Dest: n.From, Routing: int(protocol.RouteNeighbour), ID: n.ID}, 80)
		return nil
	}
	parts, err := ParseRanges(n.Parts, t.offer.Chunks, t.offer.Chunks)
	if err != nil {
		return err
	}
	for _, i := range parts {
		if t.have.Has(i) {
			data, err := t.dl.ReadChunk(i)
			if err != nil {
				continue
			}
			r.serve(t, n.From, i, data)
			continue
		}
		if !slices.Contains(t.children[i], n.From) {
			t.children[i] = append(t.children[i], n.From)
		}
		if i < t.hi || t.ended || t.mode != ModeBroadcast {
			// A chunk the push has not reached yet will come with it.
			r.addWant(t, i)
		}
	}
	r.flush(now)
	return nil
}

// serveDone answers a repair ask from the completed transfer, if the ask
// is for it and the store still holds every chunk asked for.
func (r *Receiver) serveDone(n *Need) bool {
	d := r.done
	if d == nil || d.id != n.ID || d.dl == nil || n.Parts == "" {
		return false
	}
	parts, err := ParseRanges(n.Parts, d.offer.Chunks, d.offer.Chunks)
	if err != nil || len(parts) == 0 {
		return false
	}
	chunks := make([][]byte, len(parts))
	for k, i := range parts {
		if chunks[k], err = d.dl.ReadChunk(i); err != nil {
			return false
		}
	}
	for k, i := range parts {
		r.serve(d, n.From, i, chunks[k])
	}
	return true
}

func (r *Receiver) serve(t *rxTransfer, child uint32, i int, data []byte) {
	for _, q := range r.out {
		if c, ok := q.pkg.(*Chunk); ok && c.Dest == child && c.Index == i && c.ID == t.id {
			return
		}
	}
	c := &Chunk{From: r.host.ID(), Dest: child, Routing: int(protocol.RouteNeighbour), ID: t.id, Index: i,
		Data: encodePayload(t.offer.Encoding, data)}
	r.send(c, len(c.Data)+80)
	r.stats.ChunksServed++
}

func (r *Receiver) send(p protocol.Package, bytes int) {
	r.out = append(r.out, queued{pkg: p, bytes: bytes})
}

func (r *Receiver) flush(now time.Time) {
	for len(r.out) > 0 && r.pace.ready(now) {
		q := r.out[0]
		r.out = r.out[1:]
		if err := r.host.SendPackage(now, q.pkg); err != nil {
			r.cfg.Logger.Debug("ota receiver: send", "err", err)
		}
		r.pace.busy(now, q.bytes, 1)
	}
}

// parent is the neighbour on the path to id, or 0.
func (r *Receiver) parent(id uint32) uint32 {
	tree := r.host.Tree()
	for i := range tree.Subs {
		s := &tree.Subs[i]
		if s.NodeID == id || s.Contains(id) {
			return s.NodeID
		}
	}
	return 0
}

// trustedSender reports whether a chunk of transfer t may come from the
// sender of h: the distributor (pushed or answering us), or the parent
// towards it repairing a gap hop by hop. Anyone else could only slip in
// bytes that fail verification and cost a download.
func (r *Receiver) trustedSender(t *rxTransfer, h protocol.Header) bool {
	if h.From == t.dist {
		return true
	}
	return h.Routing == protocol.RouteNeighbour && h.From != 0 && h.From == r.parent(t.dist)
}

// childCount is how many neighbours a broadcast from origin is forwarded to.
func (r *Receiver) childCount(origin uint32) int {
	tree := r.host.Tree()
	n := len(tree.Subs)
	if r.parent(origin) != 0 {
		n--
	}
	return max(n, 0)
}

func (r *Receiver) afterWrite(now time.Time, t *rxTransfer) {
	if t.have.Full() && r.state == StateDownloading {
		r.verify(now, t)
		return
	}
	if now.Sub(r.lastProg) >= r.cfg.ProgressEvery {
		r.emitProgress(now, "")
	}
	r.tickTransfer(now)
}

func (r *Receiver) verify(now time.Time, t *rxTransfer) {
	r.setState(now, StateVerifying, "")
	if err := t.dl.Flush(); err != nil {
		r.fail(now, fmt.Errorf("ota: flush %s: %w", t.id, err))
		return
	}
	pub := r.cfg.PublicKey
	if t.manifest != nil {
		pub = nil // the signed manifest's SHA-256 binds the image
	}
	if err := r.cfg.Store.Finish(t.dl, pub); err != nil {
		again := r.verifyFailed(now, t.id)
		r.fail(now, fmt.Errorf("ota: verify %s: %w", t.id, err))
		if again {
			// The staged chunks were discarded; fetch them again.
			nt := *t
			nt.have = NewBitmap(t.offer.Chunks)
			nt.bytes, nt.hi, nt.lost = 0, 0, 0
			nt.dl = nil
			nt.early = map[int][]byte{}
			r.cur = nil
			r.start(now, &nt)
		}
		return
	}
	r.setState(now, StateSwitching, "")
	if err := r.cfg.Store.Switch(); err != nil {
		r.fail(now, fmt.Errorf("ota: switch to %s: %w", t.offer.MD5, err))
		return
	}
	r.report(now, t)
	r.cur = nil
	r.done = t
	r.pending = nil
	r.trialOrigin = nil
	var origin *Origin
	if t.fromOf {
		origin = &Origin{Image: t.offer.MD5, Transfer: t.id, Distributor: t.dist}
		if keep, ok := r.cfg.Store.(OriginStore); ok {
			if err := keep.SetOrigin(*origin); err != nil {
				r.cfg.Logger.Warn("ota receiver: record the origin of the new image", "transfer", t.id, "err", err)
			}
		}
	}
	if r.cfg.Restart != nil {
		r.cfg.Restart(now)
		return
	}
	if err := r.boot(now); err != nil {
		r.fail(now, err)
		return
	}
	r.trialOrigin = origin
}

// errRefused wraps the reasons an offered image is not installed.
var errRefused = errors.New("ota: image refused")

// checkManifest verifies the signed manifest an offer carries, when the
// receiver has a public key, and returns it (nil without a key).
func (r *Receiver) checkManifest(o *Offer) (*firmware.Manifest, error) {
	if r.cfg.PublicKey == nil {
		if r.cfg.RequireSigned {
			return nil, fmt.Errorf("%w: this node installs only signed images and has no public key to check them", errRefused)
		}
		return nil, nil
	}
	if o.Manifest == "" {
		return nil, fmt.Errorf("%w: it is not signed with a manifest (unsigned, or signed before manifests); sign it with 'meshfleet firmware sign'", errRefused)
	}
	encoded, err1 := base64.StdEncoding.DecodeString(o.Manifest)
	sig, err2 := base64.StdEncoding.DecodeString(o.ManifestSig)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("%w: manifest is not base64: %v", errRefused, err)
	}
	m, err := firmware.OpenManifest(encoded, sig, r.cfg.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRefused, err)
	}
	switch {
	case m.Role != r.cfg.Role || m.Hardware != r.cfg.Hardware:
		return nil, fmt.Errorf("%w: signed for role %q hardware %q, this node is role %q hardware %q", errRefused, m.Role, m.Hardware, r.cfg.Role, r.cfg.Hardware)
	case m.MD5 != o.MD5 || m.Size != o.Size:
		return nil, fmt.Errorf("%w: the manifest names md5 %s (%d bytes), the offer %s (%d bytes)", errRefused, m.MD5, m.Size, o.MD5, o.Size)
	}
	if have := r.cfg.Store.SecurityCounter(); m.Counter < have && !m.Downgrade {
		return nil, fmt.Errorf("%w: security counter %d is below this node's %d (an older image: install it only as a signed downgrade)", errRefused, m.Counter, have)
	}
	return &m, nil
}

// refuse reports why an offered image is not installed (StateRefused):
// to its distributor with every offer (a lost report is sent again), as
// an event once. The reasons do not change for the image, so a refusal is
// final for it.
func (r *Receiver) refuse(now time.Time, o *Offer, why error) {
	r.stats.Refused++
	if _, told := r.refused[o.ID]; !told {
		if len(r.refused) >= maxFailureRecords {
			clear(r.refused)
		}
		r.refused[o.ID] = why.Error()
		r.cfg.Logger.Warn("ota receiver: image refused", "transfer", o.ID, "md5", o.MD5, "distributor", o.From, "err", why)
		if r.host != nil {
			r.host.Emit(Progress{Node: r.host.ID(), Transfer: o.ID, MD5: o.MD5, State: StateRefused, Mode: Mode(o.Mode), Err: why.Error()})
		}
	}
	if err := r.sendReport(now, o.From, &Report{ID: o.ID, State: string(StateRefused), Total: o.Chunks, Error: why.Error()}); err != nil {
		r.cfg.Logger.Debug("ota receiver: refusal not reported", "transfer", o.ID, "err", err)
	}
}

// failures counts the failed verifications of one transfer.
type failures struct {
	count  int       // in a row, since the last backoff
	rounds int       // backoffs so far
	until  time.Time // no new download of the transfer before
}

// maxFailureRecords bounds the failure records a receiver keeps; expired
// ones go first when it is reached.
const maxFailureRecords = 64

// backingOff reports whether transfer id failed too often to be taken up
// again yet.
func (r *Receiver) backingOff(now time.Time, id string) bool {
	f := r.failed[id]
	return f != nil && now.Before(f.until)
}

// verifyFailed records a failed verification of transfer id and reports
// whether to fetch it again at once. After MaxFailures in a row the
// transfer rests for a backoff (doubling each round, capped), so a
// corrupting link or a hostile node cannot make the node download for
// ever, and the image is still installed once the fault is gone.
func (r *Receiver) verifyFailed(now time.Time, id string) bool {
	f := r.failed[id]
	if f == nil {
		if len(r.failed) >= maxFailureRecords {
			for k, old := range r.failed {
				if !now.Before(old.until) {
					delete(r.failed, k)
				}
			}
		}
		for k := range r.failed {
			if len(r.failed) < maxFailureRecords {
				break
			}
			delete(r.failed, k) // all backing off: forget one rather than grow
		}
		f = &failures{}
		r.failed[id] = f
	}
	f.count++
	if f.count < r.cfg.MaxFailures {
		return true
	}
	backoff := r.cfg.MaxFailureBackoff
	if f.rounds < 30 {
		backoff = min(r.cfg.FailureBackoff<<f.rounds, r.cfg.MaxFailureBackoff)
	}
	f.count, f.until = 0, now.Add(backoff)
	f.rounds++
	r.cfg.Logger.Warn("ota receiver: transfer failed verification repeatedly; backing off", "transfer", id,
		"failures", r.cfg.MaxFailures, "retry_after", backoff)
	return false
}

func (r *Receiver) fail(now time.Time, err error) {
	r.cfg.Logger.Warn("ota receiver: update failed", "err", err)
	t := r.cur
	r.setState(now, StateFailed, err.Error())
	if t != nil {
		if t.fromOf {
			r.sendReport(now, t.dist, &Report{ID: t.id, State: string(StateFailed), Error: err.Error(), Total: t.offer.Chunks})
		}
		r.cur = nil
	}
}

func (r *Receiver) setState(now time.Time, s State, errText string) {
	if r.state == s && errText == "" {
		return
	}
	r.state = s
	r.emitProgress(now, errText)
}

func (r *Receiver) emitProgress(now time.Time, errText string) {
	r.lastProg = now
	p := Progress{Node: r.host.ID(), State: r.state, Err: errText}
	if t := r.cur; t != nil {
		p.Transfer, p.MD5, p.Mode = t.id, t.offer.MD5, t.mode
		p.Done, p.Total, p.Bytes = t.have.Count(), t.have.Len(), t.bytes
		if el := now.Sub(t.start).Seconds(); el > 0 && t.bytes > 0 {
			p.Rate = float64(t.bytes) / el
			if p.Done > 0 {
				remaining := float64(p.Total-p.Done) * float64(t.bytes) / float64(p.Done)
				p.ETA = time.Duration(remaining / p.Rate * float64(time.Second))
			}
		}
	} else {
		// After the switch the transfer is gone; keep its totals.
		p.Transfer, p.Mode, p.Done, p.Total, p.Bytes = r.lastEv.Transfer, r.lastEv.Mode, r.lastEv.Done, r.lastEv.Total, r.lastEv.Bytes
		p.MD5, _ = r.cfg.Store.Active()
	}
	r.lastEv = p
	if r.host != nil {
		r.host.Emit(p)
	}
}

func (r *Receiver) progressReport() *Report {
	t := r.cur
	return &Report{ID: t.id, State: string(r.state), Have: t.have.Count(), Total: t.have.Len(), High: t.hi, Lost: t.lost}
}

func (r *Receiver) report(now time.Time, t *rxTransfer) {
	if !t.fromOf {
		return
	}
	rep := r.progressReport()
	rep.State = string(r.state)
	r.sendReport(now, t.dist, rep)
}

func (r *Receiver) sendReport(now time.Time, dist uint32, rep *Report) error {
	if dist == 0 || r.host == nil {
		return errors.New("ota: report: no distributor")
	}
	rep.From, rep.Dest, rep.Routing = r.host.ID(), dist, int(protocol.RouteSingle)
	if rep.Active == "" {
		rep.Active, _ = r.cfg.Store.Active()
	}
	return r.host.SendPackage(now, rep)
}

// final reports a trial's outcome about image md5 to the distributor of
// its transfer at once. When that distributor is unknown (the store keeps
// no origin), the outcome goes with the next offer of the same image.
func (r *Receiver) final(now time.Time, rep *Report, md5 string) {
	p := &outcome{rep: rep, md5: md5}
	if o := r.trialOrigin; o != nil && o.Image == md5 {
		rep.ID, p.dist = o.Transfer, o.Distributor
	}
	r.trialOrigin = nil
	r.pending = p
	r.deliver(now)
}

// deliver sends the pending outcome if its distributor is known; an
// unreachable one is tried again every finalRetry.
func (r *Receiver) deliver(now time.Time) {
	p := r.pending
	if p == nil || p.dist == 0 || r.host == nil || now.Before(p.retry) {
		return
	}
	if err := r.sendReport(now, p.dist, p.rep); err != nil {
		r.cfg.Logger.Debug("ota receiver: outcome not delivered yet", "transfer", p.rep.ID, "state", p.rep.State, "err", err)
		p.retry = now.Add(finalRetry)
		return
	}
	r.pending = nil
	if keep, ok := r.cfg.Store.(OriginStore); ok {
		if o, ok := keep.Origin(); ok && o.Image == p.md5 && !o.Reported {
			o.Reported = true
			if err := keep.SetOrigin(o); err != nil {
				r.cfg.Logger.Warn("ota receiver: record the reported outcome", "transfer", p.rep.ID, "err", err)
			}
		}
	}
}
