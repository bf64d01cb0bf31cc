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
type sendBudget struct {
	maxSize int
	now     func() time.Time

	mu    sync.Mutex
	msgs  tokenBucket
	bytes tokenBucket

	tooLarge, rateLimited atomic.Uint64 // refusals, for /metrics
}

func newSendBudget(cfg SendConfig, now func() time.Time) *sendBudget {
	return &sendBudget{maxSize: cfg.MaxSize, now: now,
		msgs:  tokenBucket{rate: cfg.Rate, capacity: max(cfg.Rate, 1)},
		bytes: tokenBucket{rate: cfg.RateBytes, capacity: max(cfg.RateBytes, float64(cfg.MaxSize))},
	}
}

// admit takes the budget for one package of size bytes (its encoded
// length), or says why it is refused.
func (b *sendBudget) admit(size int) error {
	if size > b.maxSize {
		b.tooLarge.Add(1)
		return fmt.Errorf("message is %d bytes as a mesh package, more than send.max_size (%d): %w", size, b.maxSize, fleet.ErrTooLarge)
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs.fill(now)
	b.bytes.fill(now)
	if b.msgs.tokens < 1 || b.bytes.tokens < float64(size) {
		b.rateLimited.Add(1)
		return fmt.Errorf("the mesh's airtime budget for messages (send.rate %v/s, send.rate_bytes %v B/s) is used up; retry later: %w",
			b.msgs.rate, b.bytes.rate, fleet.ErrRateLimited)
	}
	b.msgs.tokens--
	b.bytes.tokens -= float64(size)
	return nil
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
