package ota

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// Receiver is the OTA receiver plugin: it speaks the stock protocol to any
// distributor and our extensions to ours, stages chunks in the slot store,
// verifies, switches, and confirms or rolls back.

// Receiver is the OTA receiver plugin: it speaks the stock protocol to any
// distributor and our extensions to ours, stages chunks in the slot store,
// verifies, switches, and confirms or rolls back. How the chunks of a
// transfer are fetched is its fetcher's part (fetch.go); answering
// children's repair asks is childRepairs' (repairs.go).
type Receiver struct {
	cfg  ReceiverConfig
	host mesh.Host
	rng  *rand.Rand

	state   State
	cur     *incoming
	repairs childRepairs
	failed  map[string]*failures // transfer id → verification failures

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
	// reportedIDs maps transfer id → when "confirmed" was last sent for
	// it in answer to an offer (reportAgain says why it repeats).
	reportedIDs map[string]time.Time
	rolledBack  string // md5 that rolled back this boot or the last

	// distImage is the image of the last offer a distributor made (not a
	// peer): the one image this node takes from peers.
	distImage string

	// trialOrigin is where the running trial image came from, when known.
	trialOrigin *Origin

	offerAsked time.Time // no new offer request before
	// storeBusy: the driver is doing store work for us (storeWork); the
	// store is not touched until it answers.
	storeBusy bool

	lastProg time.Time
	lastEv   Progress
	stats    ReceiverStats
	asked    []int // every chunk index asked for, in order (tests)
	// newPeers are neighbours that connected, to be offered what this
	// node serves once routable, until when (peers.go).
	newPeers map[uint32]*peerOffer
	peerPoll time.Time
}

// ReceiverStats count what the receiver sent, for tests and benchmarks.
type ReceiverStats struct {
	StockRequests   int // type 11 sent
	NeedsSent       int // type 721 sent
	ChunksAsked     int // chunks named in those
	ChunksServed    int // chunks sent to children
	DuplicateChunk  int // chunks received that were already held
	WriteBufferFull int // chunks dropped: the write buffer was full
	Rejected        int // packages that did not match what we download
	Refused         int // offers refused by the manifest checks
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
		reportedIDs: map[string]time.Time{},
	}
	r.repairs = childRepairs{r: r, pace: pacer{radio: cfg.Radio}}
	r.rng = rand.New(rand.NewPCG(cfg.Seed, 0x6f7461))
	if err := r.boot(now); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Receiver) boot(now time.Time) error {
	b, err := bootStore(r.cfg.Store, now)
	if err != nil {
		return err
	}
	r.booted(now, b)
	return nil
}

// bootState is what the store says at boot.
type bootState struct {
	trial, hasOrigin bool
	deadline         time.Time
	origin           Origin
	rolledBack       string // "": none to report
	active           string
}

// bootStore boots store and reads what booted: store work, which may
// write (a trial's deadline, a rollback handed out).
func bootStore(store Store, now time.Time) (bootState, error) {
	var b bootState
	var err error
	b.trial, b.deadline, err = store.Boot(now)
	if err != nil {
		return b, fmt.Errorf("ota: boot slot store: %w", err)
	}
	if keep, ok := store.(OriginStore); ok {
		b.origin, b.hasOrigin = keep.Origin()
	}
	b.rolledBack, _ = store.LastRollback()
	b.active, _ = store.Active()
	return b, nil
}

// booted takes up the state the store booted into.
func (r *Receiver) booted(now time.Time, b bootState) {
	trial, deadline, origin, hasOrigin := b.trial, b.deadline, b.origin, b.hasOrigin
	if md5 := b.rolledBack; md5 != "" {
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
		// The first boot of an image a distributor offered (through a
		// peer or not): until the distributor offers another, a
		// neighbour that still holds the replaced image must not offer it
		// back. distImage lives in RAM, and without this every reboot
		// into a new image took the first neighbour's offer of the old
		// one, and two neighbours could swap images for ever.
		r.distImage = b.active
		if hasOrigin && origin.Image == b.active && !origin.Reported {
			r.trialOrigin = &origin
		}
		r.trial = true
		r.trialDeadline = deadline
		r.state = StateSwitching
		if r.cfg.SelfTest != nil {
			r.selfTestAt = now.Add(r.cfg.SelfTestDelay)
		}
	}
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
	return r.cur.id, r.cur.held.Count(), r.cur.held.Len(), true
}

// Confirm is how a running trial image reports itself healthy (the
// restarted process calls it once it is up). The store confirms off the
// step: the receiver is confirmed when it answered; should the store fail,
// the trial stays and rolls back at its deadline.
func (r *Receiver) Confirm(now time.Time) error {
	if !r.trial {
		return nil
	}
	if r.storeBusy {
		return errors.New("ota: confirm: the store is still busy with the trial (confirming or rolling back)")
	}
	r.confirm(now, func(time.Time) {})
	return nil
}

// confirm has the store confirm the trial image, then goes on with then.
func (r *Receiver) confirm(now time.Time, then func(now time.Time)) {
	store := r.cfg.Store
	var md5 string
	r.storeWork(now, func() error {
		if err := store.Confirm(now); err != nil {
			return err
		}
		md5, _ = store.Active()
		return nil
	}, func(now time.Time, err error) {
		if err != nil {
			r.cfg.Logger.Warn("ota receiver: confirm", "err", err)
		} else {
			r.trial = false
			r.setState(now, StateConfirmed, "")
			r.final(now, &Report{State: string(StateConfirmed), Active: md5}, md5)
		}
		then(now)
	})
}

// HandlePackage implements mesh.Plugin.
func (r *Receiver) HandlePackage(now time.Time, conn mesh.ConnID, h protocol.Header, raw []byte) {
	if r.storeBusy {
		// Everything here may need the store, which is busy for us: offers
		// and announces repeat, children ask again, a chunk missed now is
		// fetched again (none is missing while the image is verified).
		if h.Type == TypeChunk && h.Routing == protocol.RouteBroadcast {
			r.repairs.relayed(now, h, len(raw)) // the radio is busy all the same
		}
		return
	}
	var err error
	switch h.Type {
	case protocol.TypeOTAAnnounce:
		err = r.onAnnounce(now, raw)
	case protocol.TypeOTAData:
		if t := r.cur; t != nil {
			if f, ok := t.fetch.(*stockFetch); ok {
				err = f.onData(now, raw)
			}
		}
	case TypeOffer:
		err = r.onOffer(now, h, raw)
	case TypeChunk:
		err = r.onChunk(now, h, raw)
	case TypeNeed:
		err = r.repairs.onNeed(now, h, raw)
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

// reportAgain is how long a node running an offered image waits before it
// answers another offer of it with "confirmed" again. A report travels
// unacknowledged and may be lost; a distributor that still offers the
// image has not heard it (it offers while some target is not through),
// so the answer repeats, at most once per announce interval or so.
const reportAgain = 30 * time.Second

func (r *Receiver) reportDue(now time.Time, id string) bool {
	last, ok := r.reportedIDs[id]
	return !ok || now.Sub(last) >= reportAgain
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

func (r *Receiver) onOffer(now time.Time, h protocol.Header, raw []byte) error {
	o, err := DecodeOffer(raw)
	if err != nil {
		return err
	}
	if o.Role != r.cfg.Role || o.Hardware != r.cfg.Hardware {
		return nil
	}
	late := h.Routing == protocol.RouteNeighbour
	if late && r.distImage != "" && o.MD5 != r.distImage {
		// A neighbour offers what it holds, which may be the image of a
		// campaign a newer one replaced: from peers, only the image the
		// distributor offers now.
		return nil
	}
	if !late {
		r.distImage = o.MD5
	}
	r.offered[o.MD5] = o.ID
	r.repairs.noteOffer(*o, !late)
	if !o.For(r.host.ID()) {
		// The campaign lists other nodes. Knowing the offer keeps the
		// stock announce of the image and its pushed chunks from
		// starting a download here.
		if t := r.cur; t != nil && !t.viaOffer && t.offer.MD5 == o.MD5 {
			// Started from the stock announce, whose requests will go
			// unanswered.
			r.dropTransfer(now, "")
		}
		return nil
	}
	if p := r.pending; p != nil && (p.dist == 0 && p.md5 == o.MD5 || p.dist != 0 && p.rep.ID == o.ID) {
		// The outcome belongs to this offer's transfer: an outcome of
		// another image is never reported to another campaign.
		p.rep.ID, p.dist, p.retry = o.ID, o.From, time.Time{}
		if State(p.rep.State) == StateConfirmed {
			r.reportedIDs[o.ID] = now
		}
		r.deliver(now)
	}
	if r.installedOrBlocked(o.MD5, o.Forced) {
		active, _ := r.cfg.Store.Active()
		if active == o.MD5 && r.reportDue(now, o.ID) && !r.trial {
			r.reportedIDs[o.ID] = now
			r.sendReport(now, o.From, &Report{ID: o.ID, State: string(StateConfirmed), Active: active})
		}
		return nil
	}
	if t := r.cur; t != nil && t.id == o.ID && (!t.viaOffer || sameCut(t.offer, *o)) {
		t.dist = o.From
		if f, ok := t.fetch.(*stockFetch); ok {
			f.resume(now)
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
	t := &incoming{
		id:       o.ID,
		offer:    *o,
		viaOffer: true,
		mode:     mode,
		dist:     o.From,
		start:    now,
		have:     NewBitmap(o.Chunks),
		held:     NewBitmap(o.Chunks),
		manifest: m,
		// A peer's offer comes hop by hop, after the push (peers.go).
		late: late,
	}
	t.fetch = r.newFetcher(t, false)
	r.start(now, t)
	return nil
}

// sameCut reports whether two offers of one transfer cut the same bytes
// into the same chunks. A distributor that restarted offers the campaign
// again under its id, but may cut it anew (the chunk size follows the mesh
// it sees): chunks of the old cut are then of no use.
func sameCut(a, b Offer) bool {
	return a.MD5 == b.MD5 && a.TMD5 == b.TMD5 && a.Method == b.Method && a.ChunkSize == b.ChunkSize && a.Chunks == b.Chunks
}

// start replaces any transfer in progress (a newer image supersedes) and
// opens the download, resuming staged chunks of the same transfer.
func (r *Receiver) start(now time.Time, t *incoming) {
	var superseded Download
	if old := r.cur; old != nil {
		r.cfg.Logger.Info("ota receiver: superseded", "old", old.id, "new", t.id)
		superseded = old.staged
	}
	r.cur = t
	r.repairs.reset()
	t.lastChunk = now
	t.nextReport = now.Add(time.Duration(r.rng.Int64N(int64(r.cfg.ReportInterval))))
	if t.offer.ChunkSize > 0 {
		r.open(now, t, superseded, func(now time.Time) { r.downloading(now, t) })
		return
	}
	if superseded != nil {
		r.deferStore(now, superseded.Flush, nil)
	}
	r.downloading(now, t)
}

// downloading starts fetching t, open or (stock, chunk size unknown) not
// yet.
func (r *Receiver) downloading(now time.Time, t *incoming) {
	r.setState(now, StateDownloading, "")
	t.fetch.begin(now)
	if t.viaOffer {
		r.sendReport(now, t.dist, r.progressReport())
	}
	if t.held.Len() > 0 && t.held.Full() {
		// The store held every chunk already (the power went while the
		// image was verified): no chunk will come in to start the check.
		r.verify(now, t)
		return
	}
	r.tickTransfer(now)
}

// open has the store begin, or resume, t's download (after flushing a
// superseded one, if any), then goes on with opened. The chunks the store
// already holds count as held.
func (r *Receiver) open(now time.Time, t *incoming, superseded Download, opened func(now time.Time)) {
	o := &t.offer
	tr := Transfer{
		Image: o.MD5, ImageSize: o.Size, Method: o.Method, TransferSize: o.TSize, TransferMD5: o.TMD5,
		ChunkSize: o.ChunkSize, Chunks: o.Chunks, Signature: decodeSig(o.Signature),
		Version: o.Version, Role: o.Role, Hardware: o.Hardware,
	}
	if m := t.manifest; m != nil {
		tr.SHA256, tr.Counter, tr.Version = m.SHA256, m.Counter, m.Version
	}
	store := r.cfg.Store
	var dl Download
	r.storeWork(now, func() error {
		if superseded != nil {
			_ = superseded.Flush()
		}
		var err error
		dl, err = store.Begin(tr)
		return err
	}, func(now time.Time, err error) {
		if err != nil {
			r.fail(now, fmt.Errorf("ota: begin %s: %w", t.id, err))
			return
		}
		t.staged = dl
		for i := 0; i < o.Chunks; i++ {
			if dl.Has(i) {
				t.have.Set(i)
				t.held.Set(i)
				t.bytes += int64(o.ChunkSize)
			}
		}
		opened(now)
	})
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

func (r *Receiver) write(now time.Time, t *incoming, i int, data []byte) {
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
	if t.staged == nil {
		return
	}
	if !r.buffer(now, t, i, data) {
		r.stats.WriteBufferFull++
		return
	}
	t.have.Set(i)
	t.fetch.stored(i)
	r.repairs.stored(t, i, data)
}

// afterWrite goes on after a chunk came in: at once if it was not taken,
// else when the store answered its write (afterStored).
func (r *Receiver) afterWrite(now time.Time, t *incoming) {
	if t.writes.inFlight != nil {
		return
	}
	r.afterStored(now, t)
}

// afterStored verifies t once every chunk is held, else reports progress
// and sends the asks that are due.
func (r *Receiver) afterStored(now time.Time, t *incoming) {
	if t.held.Full() && r.state == StateDownloading {
		r.verify(now, t)
		return
	}
	if now.Sub(r.lastProg) >= r.cfg.ProgressEvery {
		r.emitProgress(now, "")
	}
	r.tickTransfer(now)
}
