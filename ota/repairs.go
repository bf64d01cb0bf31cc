package ota

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// childRepairs serves the repair asks of this node's children (Need with
// routing 0, broadcast mode) from its own copy: for chunks held, once the
// driver read them from the store (or at once from the write buffer),
// on arrival for chunks still being fetched, and from the transfer that
// last completed here while the store can read it, so a relay that
// finishes first does not send its children to the distributor. A node
// that does not hold the transfer answers with Refuse. Its sends share the
// node's one radio with the push it relays, so they are paced.
type childRepairs struct {
	r     *Receiver
	queue []queued
	pace  pacer
	// waiting maps a chunk of the current transfer to the children that
	// asked for it before it arrived here.
	waiting map[int][]uint32
	// done is the transfer that last completed here.
	done *incoming
	// offers are the latest offers heard (serveconfirmed.go).
	offers []Offer
	// packed is the compressed transfer made again for serving (peers.go).
	packed *packed
}

type queued struct {
	pkg   protocol.Package
	bytes int
}

// reset forgets the children waiting and the completed transfer: a new
// transfer starts.
func (s *childRepairs) reset() {
	s.waiting = map[int][]uint32{}
	s.done = nil
}

// relayed accounts for the airtime of a broadcast chunk this node
// forwards once per child, so repairs do not overflow the radio.
func (s *childRepairs) relayed(now time.Time, h protocol.Header, bytes int) {
	s.pace.busy(now, bytes, s.r.childCount(h.From))
}

// onNeed serves a child's repair request from our own copy.
func (s *childRepairs) onNeed(now time.Time, h protocol.Header, raw []byte) error {
	r := s.r
	if h.Dest != r.host.ID() {
		return nil
	}
	n, err := DecodeNeed(raw)
	if err != nil {
		return err
	}
	t := r.cur
	// A transfer still coming in is not verified: its chunks go on hop by
	// hop to neighbours only, as the push itself does; a node further away
	// is served only a verified image (serveDone, serveConfirmed).
	if t == nil || t.isStock() || t.id != n.ID || t.staged == nil || r.routeTo(n.From) != protocol.RouteNeighbour {
		if !s.serveDone(now, n) && !s.serveConfirmed(now, n) {
			s.refuse(now, n)
		}
		return nil
	}
	parts, err := ParseRanges(n.Parts, t.offer.Chunks, t.offer.Chunks)
	if err != nil {
		return err
	}
	var onDisk []int
	for _, i := range parts {
		if t.have.Has(i) {
			if data, ok := t.writes.chunk(i); ok {
				s.serve(t, n.From, i, data)
			} else {
				onDisk = append(onDisk, i)
			}
			continue
		}
		if !slices.Contains(s.waiting[i], n.From) {
			s.waiting[i] = append(s.waiting[i], n.From)
		}
		t.fetch.childWaits(i)
	}
	if len(onDisk) > 0 {
		s.read(now, t, onDisk, func(now time.Time, chunks [][]byte, _ error) {
			for k, i := range onDisk {
				if chunks[k] != nil {
					s.serve(t, n.From, i, chunks[k])
				}
			}
			s.flush(now)
		})
	}
	s.flush(now)
	return nil
}

func (s *childRepairs) refuse(now time.Time, n *Need) {
	s.send(&Refuse{From: s.r.host.ID(), Dest: n.From, Routing: int(s.r.routeTo(n.From)), ID: n.ID}, 80)
}

// read has the driver read chunks parts of t's download off the step (a
// disk read on a Linux node); done gets them, nil where a read failed,
// and the first error.
func (s *childRepairs) read(now time.Time, t *incoming, parts []int, done func(now time.Time, chunks [][]byte, err error)) {
	staged := t.staged
	chunks := make([][]byte, len(parts))
	s.r.deferStore(now, func() error {
		var first error
		for k, i := range parts {
			var err error
			if chunks[k], err = staged.ReadChunk(i); err != nil && first == nil {
				first = err
			}
		}
		return first
	}, func(now time.Time, err error) { done(now, chunks, err) })
}

// stored serves chunk i of t, just stored, to the children waiting for it.
func (s *childRepairs) stored(t *incoming, i int, data []byte) {
	if kids := s.waiting[i]; len(kids) > 0 {
		delete(s.waiting, i)
		for _, c := range kids {
			s.serve(t, c, i, data)
		}
	}
}

// serveDone answers a repair ask from the completed transfer, if the ask
// is for it: with the chunks asked for once the store read them all, with
// Refuse if it no longer holds one. False: the ask is not for it.
func (s *childRepairs) serveDone(now time.Time, n *Need) bool {
	d := s.done
	if d == nil || d.id != n.ID || d.staged == nil || n.Parts == "" {
		return false
	}
	parts, err := ParseRanges(n.Parts, d.offer.Chunks, d.offer.Chunks)
	if err != nil || len(parts) == 0 {
		return false
	}
	s.read(now, d, parts, func(now time.Time, chunks [][]byte, err error) {
		if err != nil {
			s.refuse(now, n) // sent with the next flush, as any refusal
			return
		}
		for k, i := range parts {
			s.serve(d, n.From, i, chunks[k])
		}
		s.flush(now)
	})
	return true
}

func (s *childRepairs) serve(t *incoming, child uint32, i int, data []byte) {
	for _, q := range s.queue {
		if c, ok := q.pkg.(*Chunk); ok && c.Dest == child && c.Index == i && c.ID == t.id {
			return
		}
	}
	c := &Chunk{From: s.r.host.ID(), Dest: child, Routing: int(s.r.routeTo(child)), ID: t.id, Index: i,
		Data: encodePayload(t.offer.Encoding, data)}
	s.send(c, len(c.Data)+80)
	s.r.stats.ChunksServed++
}

func (s *childRepairs) send(p protocol.Package, bytes int) {
	s.queue = append(s.queue, queued{pkg: p, bytes: bytes})
}

// flush sends what the radio has room for now.
func (s *childRepairs) flush(now time.Time) {
	for len(s.queue) > 0 && s.pace.ready(now) {
		q := s.queue[0]
		s.queue = s.queue[1:]
		if err := s.r.host.SendPackage(now, q.pkg); err != nil {
			s.r.cfg.Logger.Debug("ota receiver: send", "err", err)
		}
		s.pace.busy(now, q.bytes, 1)
	}
}

// nextDeadline is when the radio has room for the next queued send.
func (s *childRepairs) nextDeadline() time.Time {
	if len(s.queue) == 0 {
		return time.Time{}
	}
	return s.pace.readyAt()
}
