package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// sendBudget admits application messages into the mesh: at most maxSize
// bytes per package and an airtime budget of two token buckets, one in
// messages and one in bytes per second, each holding one second's worth
// (the byte bucket at least one maxSize package). Every radio link of the
// path carries what it admits, so a client on MQTT or REST cannot crowd
// out the mesh's own traffic (node sync, time sync, OTA, status).
//
// Each sender (fleet.SenderOf: an MQTT user or client id, "rest") also
// has buckets of its own holding send.per_client_share of the budget, so
// one flooding client cannot use up everyone's. At most maxSenders of them
// are kept: a bucket that has refilled is the same as a new one and is
// dropped first, else the one unused for longest.
type sendBudget struct {
	maxSize int
	share   float64

	mu      sync.Mutex
	now     func() time.Time
	msgs    tokenBucket
	bytes   tokenBucket
	senders map[string]*senderBudget
	// decided, when set (by tests), hears every decision on a sender's
	// message, under mu: messages arrive from MQTT asynchronously.
	decided func(sender string, err error)

	tooLarge, rateLimited, clientRateLimited atomic.Uint64 // refusals, for /metrics
}

// senderBudget is one sender's share of the airtime budget.
type senderBudget struct {
	msgs, bytes tokenBucket
	used        time.Time // its last message
}

// maxSenders bounds the senders whose share is tracked at once.
const maxSenders = 1024

func newSendBudget(cfg SendConfig, now func() time.Time) *sendBudget {
	share := cfg.PerClientShare
	if share <= 0 || share > 1 {
		share = 1
	}
	return &sendBudget{maxSize: cfg.MaxSize, share: share, now: now, senders: map[string]*senderBudget{},
		msgs:  newTokenBucket(cfg.Rate, 1),
		bytes: newTokenBucket(cfg.RateBytes, float64(cfg.MaxSize)),
	}
}

// newTokenBucket holds one second's worth of rate, and at least least.
func newTokenBucket(rate, least float64) tokenBucket {
	return tokenBucket{rate: rate, capacity: max(rate, least)}
}

// admit takes the budget, and sender's share of it, for one package of
// size bytes (its encoded length), or says why it is refused. sender ""
// has no share of its own.
func (b *sendBudget) admit(sender string, size int) error {
	if size > b.maxSize {
		b.tooLarge.Add(1)
		return fmt.Errorf("message is %d bytes as a mesh package, more than send.max_size (%d): %w", size, b.maxSize, fleet.ErrTooLarge)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.admitLocked(sender, size)
	if b.decided != nil {
		b.decided(sender, err)
	}
	return err
}

func (b *sendBudget) admitLocked(sender string, size int) error {
	now := b.now()
	b.msgs.fill(now)
	b.bytes.fill(now)
	var own *senderBudget
	if sender != "" {
		own = b.senderLocked(sender, now)
		own.msgs.fill(now)
		own.bytes.fill(now)
		if own.msgs.tokens < 1 || own.bytes.tokens < float64(size) {
			b.clientRateLimited.Add(1)
			return fmt.Errorf("your share of the mesh's airtime budget for messages (send.per_client_share %v: %v/s, %v B/s) is used up; retry later: %w",
				b.share, own.msgs.rate, own.bytes.rate, fleet.ErrRateLimited)
		}
	}
	if b.msgs.tokens < 1 || b.bytes.tokens < float64(size) {
		b.rateLimited.Add(1)
		return fmt.Errorf("the mesh's airtime budget for messages (send.rate %v/s, send.rate_bytes %v B/s) is used up; retry later: %w",
			b.msgs.rate, b.bytes.rate, fleet.ErrRateLimited)
	}
	b.msgs.tokens--
	b.bytes.tokens -= float64(size)
	if own != nil {
		own.msgs.tokens--
		own.bytes.tokens -= float64(size)
	}
	return nil
}

// senderLocked is sender's budget, made (full) if it has none, making
// room for it if maxSenders are kept.
func (b *sendBudget) senderLocked(sender string, now time.Time) *senderBudget {
	if s, ok := b.senders[sender]; ok {
		s.used = now
		return s
	}
	if len(b.senders) >= maxSenders {
		b.evictLocked(now)
	}
	s := &senderBudget{msgs: newTokenBucket(b.msgs.rate*b.share, 1), bytes: newTokenBucket(b.bytes.rate*b.share, float64(b.maxSize)), used: now}
	b.senders[sender] = s
	return s
}

// evictLocked drops the senders whose buckets have refilled (dropping them
// changes nothing), or if none has, the one that sent least recently.
func (b *sendBudget) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, s := range b.senders {
		s.msgs.fill(now)
		s.bytes.fill(now)
		if s.msgs.tokens >= s.msgs.capacity && s.bytes.tokens >= s.bytes.capacity {
			delete(b.senders, k)
			continue
		}
		if oldest == "" || s.used.Before(oldestAt) {
			oldest, oldestAt = k, s.used
		}
	}
	if len(b.senders) >= maxSenders {
		delete(b.senders, oldest)
	}
}

// senderCount is how many senders' shares are tracked (tests).
func (b *sendBudget) senderCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.senders)
}

// tokenBucket holds up to capacity tokens, refilled at rate per second.
type tokenBucket struct {
	rate, capacity, tokens float64
	at                     time.Time // last fill; zero: never (starts full)
}

func (t *tokenBucket) fill(now time.Time) {
	if t.at.IsZero() {
		t.tokens, t.at = t.capacity, now
		return
	}
	if dt := now.Sub(t.at); dt > 0 {
		t.tokens = min(t.capacity, t.tokens+dt.Seconds()*t.rate)
		t.at = now
	}
}
