package ota

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// ActiveReader is implemented by stores that can read the running image.
// A receiver with ServeConfirmed serves its children's repair asks for a
// confirmed image from it.
type ActiveReader interface {
	// ReadActive returns up to n bytes of the running image from off
	// (fewer at its end).
	ReadActive(off int64, n int) ([]byte, error)
}

// knownOffers bounds the offers a receiver remembers for serving.
const knownOffers = 4

// noteOffer remembers an offer of this node's role and hardware, the
// latest few, so a repair ask for its transfer can be served from the
// running image.
func (s *childRepairs) noteOffer(o Offer, current bool) {
	s.offers = slices.DeleteFunc(s.offers, func(k Offer) bool {
		// An offer from the distributor of another image for our role
		// means the campaigns before it were replaced: offering their
		// image to a neighbour would take it back to an older one.
		return k.ID == o.ID || current && k.MD5 != o.MD5
	})
	s.offers = append(s.offers, o)
	if len(s.offers) > knownOffers {
		s.offers = s.offers[len(s.offers)-knownOffers:]
	}
}

// serveConfirmed answers a repair ask from the running image: only for a
// transfer of exactly that image, uncompressed, that this node verified
// (md5, and signature with a key) and confirmed. False: not its to serve.
func (s *childRepairs) serveConfirmed(now time.Time, n *Need) bool {
	r := s.r
	if !r.cfg.ServeConfirmed && !r.cfg.PeerToPeer || n.Parts == "" {
		return false
	}
	k := slices.IndexFunc(s.offers, func(o Offer) bool { return o.ID == n.ID })
	reader, ok := r.cfg.Store.(ActiveReader)
	if k < 0 || !ok {
		return false
	}
	o := s.offers[k]
	active, confirmed := r.cfg.Store.Active()
	if !confirmed || active != o.MD5 || o.ChunkSize <= 0 {
		return false
	}
	plain := o.Method == "none" && o.TSize == o.Size
	if !plain && !r.cfg.PeerToPeer {
		return false // the slot holds the decoded image (peers.go packs it again)
	}
	parts, err := ParseRanges(n.Parts, o.Chunks, o.Chunks)
	if err != nil || len(parts) == 0 {
		return false
	}
	t := &incoming{id: o.ID, offer: o}
	chunks := make([][]byte, len(parts))
	cached, used := s.packed, (*packed)(nil)
	r.deferStore(now, func() error {
		if !plain {
			var err error
			used, err = packedChunks(reader, cached, o, parts, chunks)
			return err
		}
		for k, i := range parts {
			var err error
			if chunks[k], err = reader.ReadActive(int64(i)*int64(o.ChunkSize), o.ChunkSize); err != nil {
				return err
			}
			if len(chunks[k]) == 0 {
				return errors.New("ota: chunk beyond the running image")
			}
		}
		return nil
	}, func(now time.Time, err error) {
		if used != nil {
			s.packed = used
		}
		if err != nil {
			s.refuse(now, n)
			s.flush(now)
			return
		}
		for k, i := range parts {
			s.serve(t, n.From, i, chunks[k])
		}
		s.flush(now)
	})
	return true
}

// ReadActive implements ActiveReader.
func (s *MemoryStore) ReadActive(off int64, n int) ([]byte, error) {
	img := s.slots[s.active].image
	if off < 0 || n < 0 || off > int64(len(img)) {
		return nil, errors.New("ota: read outside the running image")
	}
	return slices.Clone(img[off:min(off+int64(n), int64(len(img)))]), nil
}

// ReadActive implements ActiveReader for a slot store: the running slot's
// image file.
func (a *slotStore) ReadActive(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, errors.New("ota: read outside the running image")
	}
	rc, err := a.s.OpenImage(a.s.State().BootSlot())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return nil, fmt.Errorf("ota: read the running image at %d: %w", off, err)
	}
	buf := make([]byte, n)
	k, err := io.ReadFull(rc, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil // the image ends here
	}
	return buf[:k], err
}
