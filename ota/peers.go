package ota

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// Peer-to-peer distribution (ReceiverConfig.PeerToPeer): a node that runs
// an image it verified and confirmed serves it to any node that asks, and
// offers it to a neighbour that connects (a straggler back in the mesh, a
// late joiner), so that node need not wait for the distributor's next
// announce; the straggler then asks the nearest nodes first (sources.go).

// OnEvent implements mesh.EventObserver: a neighbour that connects is
// offered what this node serves, once it is routable (the event comes
// with its first node sync, before its layout is taken in).
func (r *Receiver) OnEvent(now time.Time, ev mesh.Event) {
	c, ok := ev.(mesh.NewConnection)
	if !ok || !r.cfg.PeerToPeer || c.NodeID == 0 {
		return
	}
	if r.newPeers == nil {
		r.newPeers = map[uint32]*peerOffer{}
	}
	if len(r.newPeers) < maxNewPeers {
		r.newPeers[c.NodeID] = &peerOffer{next: now, until: now.Add(peerOfferWait)}
		r.peerPoll = now
	}
}

// peerOffer is a neighbour that connected, to be offered what this node
// serves: sent peerOfferSends times peerOfferGap apart (an offer may be
// lost like any message, and the next announce is a minute away), given
// up at until if it never becomes routable.
type peerOffer struct {
	next, until time.Time
	sent        int
}

// maxNewPeers bounds the neighbours waiting for an offer; peerOfferWait
// is how long one may take to become routable.
const (
	maxNewPeers    = 32
	peerOfferWait  = 10 * time.Second
	peerOfferPoll  = 100 * time.Millisecond
	peerOfferGap   = 2 * time.Second
	peerOfferSends = 2
)

// offerPeers sends the neighbours that connected the offers this node
// serves.
func (r *Receiver) offerPeers(now time.Time) {
	r.peerPoll = now.Add(peerOfferPoll)
	// In id order: the offers go out in the order they are sent, and a
	// map's order would make two runs of one seed differ.
	for _, id := range slices.Sorted(maps.Keys(r.newPeers)) {
		p := r.newPeers[id]
		if now.After(p.until) {
			delete(r.newPeers, id)
			continue
		}
		if now.Before(p.next) || r.parent(id) != id {
			continue // not due, or not routable yet
		}
		p.sent++
		p.next = now.Add(peerOfferGap)
		if p.sent >= peerOfferSends {
			delete(r.newPeers, id)
		}
		for _, o := range r.repairs.offers {
			if !o.For(id) || !r.repairs.holds(o) {
				continue
			}
			// The offer as the distributor made it (its From too, so
			// reports go to it), hop by hop: the receiver knows it comes
			// late.
			o.Routing = int(protocol.RouteNeighbour)
			_ = r.host.SendPackage(now, &offerTo{Offer: o, dest: id})
		}
	}
}

// holds reports whether this node can serve o's transfer: it runs o's
// image, verified and confirmed, or completed the transfer and holds it.
func (s *childRepairs) holds(o Offer) bool {
	if d := s.done; d != nil && d.id == o.ID && d.staged != nil {
		return true
	}
	active, confirmed := s.r.cfg.Store.Active()
	_, reads := s.r.cfg.Store.(ActiveReader)
	return reads && confirmed && active == o.MD5
}

// packed is a compressed transfer made again from the running image.
type packed struct {
	id   string
	data []byte
}

// packedChunks reads chunks parts of o's compressed transfer into chunks:
// the node keeps only the decoded image (the slot is what boots), so it
// compresses it again with o's method and serves the result only if it is
// exactly the transfer offered (its md5 is o's TMD5): the compressor is
// deterministic, and a node built with another one refuses rather than
// serve a mix. Store work (off the step): it gets the cached transfer and
// returns the one it used, which the step caches.
func packedChunks(reader ActiveReader, cached *packed, o Offer, parts []int, chunks [][]byte) (*packed, error) {
	p := cached
	if p == nil || p.id != o.ID {
		img, err := reader.ReadActive(0, int(o.Size))
		if err != nil {
			return nil, err
		}
		if sum := md5.Sum(img); int64(len(img)) != o.Size || hex.EncodeToString(sum[:]) != o.MD5 {
			return nil, errors.New("ota: the running image is not the offer's")
		}
		m, err := compress.ParseMethod(o.Method)
		if err != nil {
			return nil, err
		}
		data, err := compress.Compress(m, img)
		if err != nil {
			return nil, err
		}
		if sum := md5.Sum(data); int64(len(data)) != o.TSize || hex.EncodeToString(sum[:]) != o.TMD5 {
			return nil, fmt.Errorf("ota: compressing the running image with %s does not give the transfer offered", o.Method)
		}
		p = &packed{id: o.ID, data: data}
	}
	for k, i := range parts {
		off := i * o.ChunkSize
		if off >= len(p.data) {
			return nil, errors.New("ota: chunk beyond the transfer")
		}
		chunks[k] = bytes.Clone(p.data[off:min(off+o.ChunkSize, len(p.data))])
	}
	return p, nil
}
