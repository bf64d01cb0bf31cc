package ota

import (
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/protocol"
)

// fetcher is one way of fetching the chunks of a transfer, as raft's
// stepLeader and stepFollower are one way of stepping each:
//
//   - stockFetch: the stock request loop, one DataRequest (11) at a time;
//   - windowFetch: pipelined, a window of chunks asked of the distributor;
//   - pushFetch: broadcast, the distributor's push with gaps repaired
//     from the parent (hop by hop) or the distributor.
//
// The Receiver owns the transfer and its lifecycle (download, verify,
// switch, trial, confirm, report); a fetcher decides only what to ask for,
// of whom and when. Serving children's repairs is childRepairs' part.
type fetcher interface {
	// begin starts fetching: the transfer is downloading (and open,
	// unless a stock transfer has yet to learn its chunk size).
	begin(now time.Time)
	// tick sends the asks that are due.
	tick(now time.Time)
	// nextDeadline is when tick has work next; zero: none.
	nextDeadline() time.Time
	// arrived sees chunk i come in as a Chunk (722), pushed or asked
	// for, before it is stored.
	arrived(now time.Time, i int, pushed bool)
	// stored tells that chunk i is held now.
	stored(i int)
	// childWaits tells that a child asked for chunk i, not held yet.
	childWaits(i int)
	// discard forgets the chunks fetched so far: verification failed
	// and the store dropped them.
	discard()
}

// incoming is the transfer this node downloads: what every strategy
// shares. The fetch-specific state lives in its fetcher.
type incoming struct {
	id    string
	offer Offer // for stock announces: derived (ChunkSize 0 until known)
	// viaOffer: it came from an Offer of ours, so progress is reported to
	// its distributor (stock distributors take no reports).
	viaOffer bool
	mode     Mode
	dist     uint32
	staged   Download // nil until the store opened it
	// have is every chunk received (held, or waiting in writes to be
	// written): what the fetcher no longer asks for. held is what the
	// store answered it wrote: what is reported, verified and resumed.
	have   *Bitmap
	held   *Bitmap
	writes chunkWrites
	bytes  int64 // of the chunks held
	start  time.Time
	// lastChunk is when the last chunk arrived (or fetching restarted).
	lastChunk  time.Time
	nextReport time.Time
	// manifest is the verified manifest of the image (nil without a
	// public key): the store checks its SHA-256 and keeps its counter.
	manifest *firmware.Manifest
	fetch    fetcher
	// src is where missing chunks are asked for (sources.go).
	src sources
	// late: the offer came from a neighbour after the push (peers.go), so
	// no push is coming and missing chunks are asked for at once.
	late bool
}

// isStock reports whether the transfer runs on the stock packages (11/12).
func (t *incoming) isStock() bool { return t.mode == ModeStock }

// newFetcher returns the strategy for t's mode.
func (r *Receiver) newFetcher(t *incoming, stockBroadcast bool) fetcher {
	switch t.mode {
	case ModePipelined:
		return &windowFetch{r: r, t: t}
	case ModeBroadcast:
		return &pushFetch{r: r, t: t}
	}
	return &stockFetch{r: r, t: t, broadcasted: stockBroadcast, unsized: map[int][]byte{}}
}

// sendNeed asks to for the chunks parts of t.
func (r *Receiver) sendNeed(now time.Time, t *incoming, to uint32, routing protocol.Routing, parts []int) {
	n := &Need{From: r.host.ID(), Dest: to, Routing: int(routing), ID: t.id, Parts: FormatRanges(parts)}
	_ = r.host.SendPackage(now, n)
	r.stats.NeedsSent++
	r.stats.ChunksAsked += len(parts)
	r.asked = append(r.asked, parts...)
}

func (r *Receiver) onChunk(now time.Time, h protocol.Header, raw []byte) error {
	t := r.cur
	if h.Routing == protocol.RouteBroadcast {
		// Every broadcast chunk leaves this node once per child: count the
		// airtime so our own repairs do not overflow the radio.
		r.repairs.relayed(now, h, len(raw))
	}
	c, err := DecodeChunk(raw)
	if err != nil {
		return err
	}
	if t == nil || t.isStock() || c.ID != t.id {
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
	t.src.heard(h.From)
	t.fetch.arrived(now, c.Index, h.Routing == protocol.RouteBroadcast)
	t.lastChunk = now
	r.write(now, t, c.Index, data)
	r.afterWrite(now, t)
	return nil
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
	var push *pushFetch
	if t != nil {
		push, _ = t.fetch.(*pushFetch)
	}
	if push == nil {
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
	push.onEnd(now)
	r.tickTransfer(now)
	return nil
}

// onRefuse turns to the distributor when the parent does not hold the
// transfer (it never took part, or finished and dropped it). The asks the
// parent will not answer go out again at once: waiting out their
// deadlines would cost a NeedTimeout for nothing.
func (r *Receiver) onRefuse(now time.Time, h protocol.Header, raw []byte) error {
	t := r.cur
	if t == nil || h.Dest != r.host.ID() {
		return nil
	}
	f, err := DecodeRefuse(raw)
	if err != nil {
		return err
	}
	if f.ID != t.id {
		return nil
	}
	if f.Over && h.From == t.dist && t.viaOffer && r.state == StateDownloading {
		// Nothing more comes for it: it was taken up from an offer that
		// came late, after a newer one, or its end went unheard.
		r.dropTransfer(now, "transfer "+t.id+" is over at its distributor")
		return nil
	}
	if t.isStock() {
		return nil
	}
	if !t.src.refused(h.From) {
		return nil // a candidate passed over already, or the distributor
	}
	switch f := t.fetch.(type) {
	case *pushFetch:
		f.onRefuse(now)
	case *windowFetch:
		f.onRefuse(now)
	}
	r.tickTransfer(now)
	return nil
}

// dropTransfer gives up the transfer in progress, keeping what the store
// staged of it, and says why.
func (r *Receiver) dropTransfer(now time.Time, why string) {
	if staged := r.cur.staged; staged != nil {
		r.deferStore(now, staged.Flush, nil)
	}
	r.cur = nil
	r.setState(now, StateIdle, why)
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
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
