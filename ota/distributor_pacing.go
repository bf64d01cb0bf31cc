package ota

import "time"

// stockLink paces replies to stock DataRequests by the link they cross
// rather than by the airtime model alone. A stock receiver asks for part
// k+1 the moment it wrote part k (docs/protocol.md §8.4), so the time
// from our reply with part k to its request for k+1 is a round trip that
// carried the reply: the link moved the reply at least that fast. A
// reply is charged to the pacer at the smaller of the model's airtime
// and that smoothed round trip, so on a fast link (TCP to a gateway, a
// loopback test) one receiver is served as fast as it asks, while many
// requests queued behind a shared radio are still spaced by the model
// (their round trips grow with the queue, so the model wins). Before any
// round trip is measured the model is the starting point. On a link
// shown faster than the model a reply may also go while the radio still
// holds one reply's worth: a stop-and-wait requester whose round trip
// came in a little under the average is not held back for the
// difference.
type stockLink struct {
	rtt  rttEstimate
	sent map[uint32]stockReplySent // by requester: its last reply
}

type stockReplySent struct {
	part    int
	at      time.Time
	charged time.Duration // what the pacer was charged for it
}

// maxStockLinkNodes bounds the requesters remembered at once (a request
// names its sender, so the map grows with the network's input).
const maxStockLinkNodes = 4096

// replied records that part went to requester to at now, charged to the
// pacer at charged.
func (l *stockLink) replied(now time.Time, to uint32, part int, charged time.Duration) {
	if l.sent == nil {
		l.sent = make(map[uint32]stockReplySent)
	}
	if _, ok := l.sent[to]; !ok && len(l.sent) >= maxStockLinkNodes {
		return
	}
	l.sent[to] = stockReplySent{part: part, at: now, charged: charged}
}

// asked records a request from from for part: the round trip of its
// previous reply when that was the part before. It returns the radio
// time charged for that reply beyond the round trip that carried it (the
// model's first guesses on a fast link), for the pacer to take back.
func (l *stockLink) asked(now time.Time, from uint32, part int) time.Duration {
	s, ok := l.sent[from]
	if !ok {
		return 0
	}
	delete(l.sent, from)
	if s.part+1 != part || !now.After(s.at) {
		return 0
	}
	rtt := now.Sub(s.at)
	l.rtt.sample(rtt)
	return max(s.charged-rtt, 0)
}

// cost is the radio time to charge for a reply the model prices at
// airtime.
func (l *stockLink) cost(airtime time.Duration) time.Duration {
	if l.rtt.srtt == 0 {
		return airtime
	}
	return min(airtime, l.rtt.srtt)
}
