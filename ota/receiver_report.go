package ota

import (
	"errors"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

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

func (r *Receiver) fail(now time.Time, err error) {
	r.cfg.Logger.Warn("ota receiver: update failed", "err", err)
	t := r.cur
	r.setState(now, StateFailed, err.Error())
	if t != nil {
		if t.viaOffer {
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
		p.Done, p.Total, p.Bytes = t.held.Count(), t.held.Len(), t.bytes
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
	rep := &Report{ID: t.id, State: string(r.state), Have: t.held.Count(), Total: t.held.Len()}
	if f, ok := t.fetch.(*pushFetch); ok {
		rep.High, rep.Lost = f.pushedUpTo, f.lost
	}
	return rep
}

func (r *Receiver) report(now time.Time, t *incoming) {
	if !t.viaOffer {
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
	if p == nil || p.dist == 0 || r.host == nil || now.Before(p.retry) || r.storeBusy {
		return
	}
	if err := r.sendReport(now, p.dist, p.rep); err != nil {
		r.cfg.Logger.Debug("ota receiver: outcome not delivered yet", "transfer", p.rep.ID, "state", p.rep.State, "err", err)
		p.retry = now.Add(finalRetry)
		return
	}
	r.pending = nil
	if keep, ok := r.cfg.Store.(OriginStore); ok {
		log, id := r.cfg.Logger, p.rep.ID
		r.deferStore(now, func() error {
			if o, ok := keep.Origin(); ok && o.Image == p.md5 && !o.Reported {
				o.Reported = true
				if err := keep.SetOrigin(o); err != nil {
					log.Warn("ota receiver: record the reported outcome", "transfer", id, "err", err)
				}
			}
			return nil
		}, nil)
	}
}
