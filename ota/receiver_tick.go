package ota

import "time"

// Tick implements mesh.Plugin.
func (r *Receiver) Tick(now time.Time) {
	r.offerPeers(now)
	if r.trial && !r.storeBusy { // busy: confirming or rolling back
		// The trial ends on the store's answer, and the tick goes on
		// from there, so its outcome goes out before what the tick sends.
		switch {
		case !r.selfTestAt.IsZero() && !now.Before(r.selfTestAt):
			r.selfTestAt = time.Time{}
			md5, _ := r.cfg.Store.Active()
			if r.cfg.SelfTest(md5) {
				r.confirm(now, r.tickOn)
			} else {
				r.rollback(now, "self test failed", r.tickOn)
			}
			return
		case !r.trialDeadline.IsZero() && !now.Before(r.trialDeadline):
			r.rollback(now, "new image did not confirm in time", r.tickOn)
			return
		}
	}
	r.tickOn(now)
}

// tickOn does the tick's sends.
func (r *Receiver) tickOn(now time.Time) {
	r.deliver(now)
	r.tickTransfer(now)
	r.repairs.flush(now)
}

// rollback has the store abandon the trial image off the step, then
// reports the rollback and restarts (rolledBackTo), then goes on with then.
func (r *Receiver) rollback(now time.Time, why string, then func(now time.Time)) {
	store, log := r.cfg.Store, r.cfg.Logger
	var md5 string
	r.storeWork(now, func() error {
		md5, _ = store.Active()
		if err := store.Rollback(now); err != nil {
			log.Error("ota receiver: rollback", "err", err)
		}
		return nil
	}, func(now time.Time, _ error) {
		r.rolledBackTo(now, md5, why)
		then(now)
	})
}

func (r *Receiver) rolledBackTo(now time.Time, md5, why string) {
	r.trial = false
	r.rolledBack = md5
	r.setState(now, StateRolledBack, why)
	if _, keeps := r.cfg.Store.(OriginStore); keeps && r.cfg.Restart != nil {
		// The restart follows at once and could cut the report off on
		// its way out; the next start reports it from the store's origin.
		r.trialOrigin = nil
	} else {
		r.final(now, &Report{State: string(StateRolledBack), Error: why}, md5)
	}
	if r.cfg.Restart != nil {
		r.cfg.Restart(now)
	}
}

// NextDeadline implements mesh.Plugin.
func (r *Receiver) NextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if r.trial && !r.storeBusy {
		at(r.selfTestAt)
		at(r.trialDeadline)
	}
	at(r.repairs.nextDeadline())
	if len(r.newPeers) > 0 {
		at(r.peerPoll)
	}
	if p := r.pending; p != nil && p.dist != 0 {
		at(p.retry)
	}
	t := r.cur
	if t == nil || r.state != StateDownloading || r.storeBusy {
		return next
	}
	if t.viaOffer {
		at(t.nextReport)
	}
	at(t.fetch.nextDeadline())
	return next
}

func (r *Receiver) tickTransfer(now time.Time) {
	t := r.cur
	if t == nil || r.state != StateDownloading || r.storeBusy {
		return
	}
	if t.viaOffer && !now.Before(t.nextReport) {
		r.sendReport(now, t.dist, r.progressReport())
		t.nextReport = now.Add(r.cfg.ReportInterval)
	}
	t.fetch.tick(now)
	r.repairs.flush(now)
}
