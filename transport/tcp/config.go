package tcp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// Defaults for the zero values of Config.
const (
	// DefaultMaxMessageSize bounds one NUL-framed message. Stock nodes have
	// no protocol limit (docs/protocol.md §1.3), but nothing larger is sent by
	// either side: the largest packages are a node sync at the layout
	// limit (mesh.DefaultMaxLayoutBytes) and an OTA data package of the
	// largest chunk a receiver takes (64 KiB, about 80 KiB encoded). A
	// peer that sends more is misbehaving or hostile.
	DefaultMaxMessageSize = mesh.DefaultMaxLayoutBytes
	// DefaultMaxQueuedBytes bounds what may wait in one connection's
	// outgoing queues; a peer that lets more pile up is dropped.
	DefaultMaxQueuedBytes = 4 << 20
	// DefaultMaxConnections bounds the connections a listener serves at
	// once: an ESP32 accepts 10 (MAX_CONN, docs/protocol.md §1.1), an ESP8266 4.
	DefaultMaxConnections = 10
	// DefaultEventBuffer is the capacity of the Events channel.
	DefaultEventBuffer = 1024
	// DefaultWriteTimeout is how long one write may block before the
	// connection is considered dead and closed.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultDialTimeout bounds one outgoing connection attempt.
	DefaultDialTimeout = 10 * time.Second
)

// Config is what a Driver needs besides the node's own identity.
type Config struct {
	// Node is the identity and role of the mesh node the driver runs.
	Node mesh.Config
	// Plugins are added to the node with Use, in order, before it starts.
	Plugins []mesh.Plugin

	// Listen is the address to accept connections on (the AP side), e.g.
	// ":5555". Empty means the node accepts no connections.
	Listen string
	// Connect lists addresses to keep one connection open to each (the
	// station side). Dropped connections are retried with Backoff.
	Connect []string

	// MaxConnections bounds the accepted connections served at once;
	// further ones are closed at once, logged and counted. Connections
	// this node dials do not count. Zero means DefaultMaxConnections.
	MaxConnections int
	// MaxMessageSize is the largest accepted incoming message in bytes,
	// without its NUL; a longer one closes its connection. Zero means
	// DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxQueuedBytes bounds one connection's outgoing queues; a peer whose
	// queue would grow beyond it (it stopped reading) is dropped and
	// counted. Zero means DefaultMaxQueuedBytes.
	MaxQueuedBytes int
	// EventBuffer is the capacity of the Events channel. When the consumer
	// falls behind, the oldest undelivered event is dropped and counted.
	// Zero means DefaultEventBuffer.
	EventBuffer int
	// WriteTimeout bounds a blocked write; zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// DialTimeout bounds one connection attempt; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Backoff spaces out reconnection attempts on the station side.
	Backoff Backoff

	// Logger receives connection-level logs; nil discards them.
	Logger *slog.Logger
}

// Backoff is an exponential, jittered retry schedule. The zero value is the
// stock schedule: 1, 2, 4, 8, 8, ... seconds (docs/protocol.md §3.2), each
// delay varied by ±10 % so that nodes restarted together spread out.
type Backoff struct {
	Initial time.Duration // first delay; zero means 1 s
	Max     time.Duration // cap; zero means 8 s
	// Jitter is the relative spread of each delay, in [0, 1); zero means
	// 0.1. A negative value disables jitter.
	Jitter float64
}

// ErrInvalidConfig is wrapped by every configuration error New returns.
var ErrInvalidConfig = errors.New("invalid tcp driver config")

func (c Config) withDefaults() (Config, error) {
	if c.Node.ID == 0 {
		return c, fmt.Errorf("%w: node id must be non-zero", ErrInvalidConfig)
	}
	if c.Listen == "" && len(c.Connect) == 0 {
		return c, fmt.Errorf("%w: neither a listen address nor a connect address", ErrInvalidConfig)
	}
	for _, a := range c.Connect {
		if a == "" {
			return c, fmt.Errorf("%w: empty connect address", ErrInvalidConfig)
		}
	}
	if c.MaxMessageSize < 0 || c.MaxQueuedBytes < 0 || c.MaxConnections < 0 || c.EventBuffer < 0 ||
		c.WriteTimeout < 0 || c.DialTimeout < 0 {
		return c, fmt.Errorf("%w: negative size or timeout", ErrInvalidConfig)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = DefaultEventBuffer
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	b, err := c.Backoff.withDefaults()
	if err != nil {
		return c, err
	}
	c.Backoff = b
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (b Backoff) withDefaults() (Backoff, error) {
	if b.Initial < 0 || b.Max < 0 || b.Jitter >= 1 {
		return b, fmt.Errorf("%w: backoff %+v", ErrInvalidConfig, b)
	}
	if b.Initial == 0 {
		b.Initial = time.Second
	}
	if b.Max == 0 {
		b.Max = 8 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Jitter == 0 {
		b.Jitter = 0.1
	}
	return b, nil
}

// backoff walks one Backoff schedule.
type backoff struct {
	Backoff
	next time.Duration
}

func newBackoff(b Backoff) *backoff { return &backoff{Backoff: b, next: b.Initial} }

// delay returns the next delay and advances the schedule.
func (b *backoff) delay() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.Max)
	if b.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + b.Jitter*(2*rand.Float64()-1)))
	}
	return d
}

// reset starts the schedule over, after a connection that worked.
func (b *backoff) reset() { b.next = b.Initial }
