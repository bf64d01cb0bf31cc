package ota

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/protocol"
)

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
			r.forgetFailures(now)
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

// forgetFailures makes room for one more failure record: expired ones
// go, and if every record is still backing off, the one whose backoff
// ends first (the least protection lost; the smallest transfer id among
// equals), rather than grow. A fixed choice, not map order, so a run is
// repeatable from its seed.
func (r *Receiver) forgetFailures(now time.Time) {
	for k, old := range r.failed {
		if !now.Before(old.until) {
			delete(r.failed, k)
		}
	}
	for len(r.failed) >= maxFailureRecords {
		var first string
		var soonest *failures
		for k, f := range r.failed {
			if soonest == nil || f.until.Before(soonest.until) || (f.until.Equal(soonest.until) && k < first) {
				first, soonest = k, f
			}
		}
		delete(r.failed, first)
	}
}

// trustedSender reports whether a chunk of transfer t may come from the
// sender of h: the distributor (pushed or answering us), or the parent
// towards it repairing a gap hop by hop, or a node asked for them
// (sources.go). Anyone else could only slip in
// bytes that fail verification and cost a download.
func (r *Receiver) trustedSender(t *incoming, h protocol.Header) bool {
	if h.From == t.dist {
		return true
	}
	if h.Routing == protocol.RouteNeighbour && h.From != 0 && h.From == r.parent(t.dist) {
		return true
	}
	// A node asked for the chunks answers as we asked: a neighbour hop by
	// hop, anyone else routed.
	return t.src.tried(h.From) && h.Routing == r.routeTo(h.From)
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

// childCount is how many neighbours a broadcast from origin is forwarded to.
func (r *Receiver) childCount(origin uint32) int {
	tree := r.host.Tree()
	n := len(tree.Subs)
	if r.parent(origin) != 0 {
		n--
	}
	return max(n, 0)
}
