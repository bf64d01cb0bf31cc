package ota

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// stockFetch is the stock request loop (PROTOCOL.md §8 of the shared
// reference): one DataRequest (11) outstanding, retried every
// RequestRetry up to RequestTries times, the next part asked for as soon
// as the last one arrives. It serves stock announces and offers of mode
// stock (compressed transfers too, under the stock "compressed" flag).
type stockFetch struct {
	r *Receiver
	t *incoming

	// broadcasted is the stock flag: a root leads the transfer and the
	// others wait for its broadcast Data.
	broadcasted bool
	part        int       // the part asked for
	tries       int       // requests sent for part
	nextRequest time.Time // zero: waiting for broadcast Data
	// stalled: RequestTries requests went unanswered; the next announce
	// starts asking again (and, slowly, so does the loop without one).
	stalled bool
	// askAfterWrite: the write buffer is full (or dropped the part asked
	// for); ask once the store took the writes in flight, rather than
	// into a full buffer or a RequestRetry later (a distributor on a fast
	// link answers faster than a disk writes).
	askAfterWrite bool
	waitPushUntil time.Time // broadcasted: request ourselves after
	// unsized holds chunks that came before the chunk size is known (a
	// stock announce does not say it; the first full chunk does).
	unsized map[int][]byte
}

func (f *stockFetch) begin(now time.Time) {
	if f.broadcasted && !f.r.cfg.Root {
		f.waitPushUntil = now.Add(f.r.cfg.BroadcastWait)
		return
	}
	f.part = f.t.have.NextMissing(0)
	f.nextRequest = now
}

// resume starts asking again after a stall (a new announce or offer).
func (f *stockFetch) resume(now time.Time) {
	if f.stalled {
		f.stalled, f.tries, f.nextRequest = false, 0, now
	}
}

func (f *stockFetch) arrived(time.Time, int, bool) {}
func (f *stockFetch) stored(int)                   {}
func (f *stockFetch) childWaits(int)               {}
func (f *stockFetch) discard()                     { f.unsized = map[int][]byte{} }

func (f *stockFetch) nextDeadline() time.Time {
	if f.askAfterWrite && f.t.writes.inFlight == nil && !f.nextRequest.IsZero() {
		return f.t.lastChunk // due now: the writes are through
	}
	if !f.nextRequest.IsZero() {
		return f.nextRequest
	}
	return f.waitPushUntil
}

func (f *stockFetch) tick(now time.Time) {
	r, t := f.r, f.t
	if f.askAfterWrite && t.writes.inFlight == nil {
		f.askAfterWrite = false
		if !f.nextRequest.IsZero() {
			f.nextRequest, f.tries = now, 0
		}
	}
	if f.nextRequest.IsZero() {
		if f.waitPushUntil.IsZero() || now.Before(f.waitPushUntil) {
			return
		}
		// Q-19(b): a waiting broadcast receiver that gets nothing asks for
		// itself, in its own name and as plain unicast (Q-19 h).
		f.broadcasted = false
		f.part = t.have.NextMissing(0)
		f.tries = 0
		f.nextRequest = now
	}
	if now.Before(f.nextRequest) {
		return
	}
	if f.tries >= r.cfg.RequestTries {
		// Stock gives up here until the next announce; the announce runs
		// only for an hour, so keep trying slowly instead of hanging.
		f.stalled = true
		f.tries = 0
		f.nextRequest = now.Add(10 * r.cfg.RequestRetry)
		return
	}
	if f.part < 0 {
		f.part = t.have.NextMissing(0)
		if f.part < 0 {
			return
		}
	}
	o := &t.offer
	req := &stockMsg{Type: protocol.TypeOTADataRequest, From: r.host.ID(), Routing: int(protocol.RouteSingle),
		MD5: o.MD5, Hardware: o.Hardware, Role: o.Role, Forced: o.Forced, NoPart: uint32(o.Chunks),
		Broadcasted: f.broadcasted, Compressed: o.Method != "none", Dest: t.dist, PartNo: uint32(f.part)}
	_ = r.host.SendPackage(now, req)
	r.stats.StockRequests++
	r.asked = append(r.asked, f.part)
	f.tries++
	f.nextRequest = now.Add(r.cfg.RequestRetry)
}

// onData takes a stock Data package (12) of the transfer.
func (f *stockFetch) onData(now time.Time, raw []byte) error {
	r, t := f.r, f.t
	d, err := decodeStock(raw)
	if err != nil {
		return err
	}
	wantCompressed := t.offer.Method != "none"
	if d.MD5 != t.offer.MD5 || d.Role != t.offer.Role || d.Hardware != t.offer.Hardware ||
		int(d.NoPart) != t.offer.Chunks || d.Compressed != wantCompressed && t.viaOffer {
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
			f.unsized[i] = data
			r.open(now, t, nil, func(now time.Time) {
				for _, i := range sortedKeys(f.unsized) {
					r.write(now, t, i, f.unsized[i])
				}
				f.unsized = nil
				f.received(now)
			})
			return nil
		}
		f.unsized[i] = data
		return nil
	}
	r.write(now, t, i, data)
	f.received(now)
	return nil
}

// received goes on after a stock Data was stored (or kept until the
// download opens): the next request, the broadcast wait, the progress.
func (f *stockFetch) received(now time.Time) {
	r, t := f.r, f.t
	t.lastChunk = now
	if f.broadcasted && !r.cfg.Root && f.nextRequest.IsZero() {
		f.waitPushUntil = now.Add(r.cfg.BroadcastWait)
	}
	full := t.writes.inFlight != nil && t.writes.bytes+t.offer.ChunkSize > r.cfg.WriteBuffer
	if t.have.Has(f.part) {
		// The part we asked for arrived: ask for the next one at once, as
		// stock does, from our own state (never in another node's name),
		// unless the write buffer could not take it.
		f.part = t.have.NextMissing(0)
		f.tries = 0
		f.stalled = false
		if !f.nextRequest.IsZero() {
			if full {
				f.askAfterWrite = true
			} else {
				f.nextRequest = now
			}
		}
	} else if t.writes.inFlight != nil {
		f.askAfterWrite = true
	}
	r.afterWrite(now, t)
}

// onAnnounce takes up a stock Announce (10) that no Offer of ours carries.
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
		if f, ok := t.fetch.(*stockFetch); ok {
			f.resume(now)
		}
		return nil
	}
	if r.backingOff(now, id) {
		return nil
	}
	t := &incoming{
		id:    id,
		mode:  ModeStock,
		dist:  a.From,
		start: now,
		offer: Offer{ID: id, MD5: a.MD5, TMD5: a.MD5, Role: a.Role, Hardware: a.Hardware,
			Chunks: int(a.NoPart), Method: "none", Forced: a.Forced, Encoding: EncBase64, Mode: string(ModeStock)},
		have: NewBitmap(int(a.NoPart)),
		held: NewBitmap(int(a.NoPart)),
	}
	t.fetch = r.newFetcher(t, a.Broadcasted)
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
