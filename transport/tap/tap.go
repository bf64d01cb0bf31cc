// Package tap is a transparent TCP proxy that records painlessMesh traffic.
//
// Put it between two nodes: the station-side node connects to the tap, the
// tap opens its own connection to the upstream (AP-side) node for every
// client it accepts, and forwards the bytes both ways unchanged. It splits
// each direction at the NUL terminators and reports every message, and the
// end of each direction, as a capture.Record (the JSONL capture format of
// testdata/painlessmesh).
package tap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/capture"
)

// DefaultMaxMessageSize bounds one recorded message; see Config.
const DefaultMaxMessageSize = 1 << 20

// Config configures a Proxy.
type Config struct {
	// Listen is the address clients connect to, e.g. ":5556".
	Listen string
	// Upstream is the node every accepted client is connected through to.
	Upstream string
	// MaxMessageSize bounds the bytes kept while looking for a message's
	// NUL. A longer message is still forwarded unchanged but not recorded
	// (it is logged and counted). Zero means DefaultMaxMessageSize.
	MaxMessageSize int
	// DialTimeout bounds connecting to Upstream; zero means 10 s.
	DialTimeout time.Duration
	// Logger receives connection-level logs; nil discards them.
	Logger *slog.Logger
}

// Stats are a Proxy's counters.
type Stats struct {
	Connections  uint64 // clients accepted
	DialFailures uint64 // clients dropped because Upstream was unreachable
	Messages     uint64 // messages recorded
	Oversize     uint64 // messages forwarded but too long to record
}

// ErrInvalidConfig is wrapped by configuration errors from New.
var ErrInvalidConfig = errors.New("invalid tap config")

// Proxy is a running tap. Create it with New, start it with Run.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	start  time.Time
	record func(capture.Record)
	recMu  sync.Mutex // serialises record

	nextConn                                atomic.Int64
	conns, dialFailures, messages, oversize atomic.Uint64
	running                                 atomic.Bool
}

// New binds the listen address. record is called for every message and
// every closed direction, one call at a time, in the order the tap saw
// them; it must not block for long (it holds up the traffic it records).
func New(cfg Config, record func(capture.Record)) (*Proxy, error) {
	if cfg.Listen == "" || cfg.Upstream == "" {
		return nil, fmt.Errorf("%w: both a listen and an upstream address are required", ErrInvalidConfig)
	}
	if cfg.MaxMessageSize < 0 || cfg.DialTimeout < 0 {
		return nil, fmt.Errorf("%w: negative size or timeout", ErrInvalidConfig)
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if record == nil {
		record = func(capture.Record) {}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("tap: listen on %s: %w", cfg.Listen, err)
	}
	return &Proxy{cfg: cfg, log: cfg.Logger, ln: ln, start: time.Now(), record: record}, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Connections:  p.conns.Load(),
		DialFailures: p.dialFailures.Load(),
		Messages:     p.messages.Load(),
		Oversize:     p.oversize.Load(),
	}
}

// Close releases the listener of a Proxy whose Run was never called.
func (p *Proxy) Close() error {
	if p.running.Load() {
		return nil
	}
	return p.ln.Close()
}

// Run accepts and proxies clients until ctx ends, then closes every
// connection, waits for all of its goroutines and returns nil.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("tap: already running")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { p.ln.Close() })
	defer stop()
	p.log.Info("tap listening", "listen", p.ln.Addr(), "upstream", p.cfg.Upstream)
	var pause time.Duration
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed", "err", err, "retry_in", pause)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		p.conns.Add(1)
		id := p.nextConn.Add(1)
		wg.Go(func() { p.serve(ctx, client, id) })
	}
}

// serve proxies one client until both directions have ended.
func (p *Proxy) serve(ctx context.Context, client net.Conn, id int64) {
	defer client.Close()
	log := p.log.With("conn", id, "client", client.RemoteAddr())
	dialer := net.Dialer{Timeout: p.cfg.DialTimeout}
	upstream, err := dialer.DialContext(ctx, "tcp", p.cfg.Upstream)
	if err != nil {
		p.dialFailures.Add(1)
		log.Warn("connect to upstream failed; dropping client", "upstream", p.cfg.Upstream, "err", err)
		return
	}
	defer upstream.Close()
	setNoDelay(client)
	setNoDelay(upstream)
	log.Info("proxying", "upstream", upstream.RemoteAddr())

	// Either side failing, or ctx ending, tears down both.
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(id, capture.ClientToServer, client, upstream, log) })
	p.pipe(id, capture.ServerToClient, upstream, client, log)
	wg.Wait()
}

// pipe copies src to dst, recording each NUL-terminated message, and
// records the direction closed when src ends. A clean end of src is passed
// on as a half-close so the other direction can finish; an error closes
// both sockets.
func (p *Proxy) pipe(id int64, dir string, src, dst net.Conn, log *slog.Logger) {
	s := splitter{max: p.cfg.MaxMessageSize}
	buf := make([]byte, 32<<10)
	var err error
	for {
		var n int
		n, err = src.Read(buf)
		if n > 0 {
			t := p.since()
			s.feed(buf[:n], func(msg []byte) {
				p.messages.Add(1)
				p.emit(capture.Record{T: t, Conn: int(id), Dir: dir, Msg: string(msg)})
			}, func(size int) {
				p.oversize.Add(1)
				log.Warn("message too long to record; forwarded unchanged", "dir", dir, "bytes", size)
			})
			if _, werr := dst.Write(buf[:n]); werr != nil {
				log.Debug("forward failed", "dir", dir, "err", werr)
				err = werr
				break
			}
		}
		if err != nil {
			break
		}
	}
	if s.pending() > 0 {
		log.Warn("stream ended inside a message; partial message not recorded", "dir", dir, "bytes", s.pending())
	}
	p.emit(capture.Record{T: p.since(), Conn: int(id), Dir: dir, Event: capture.EventClosed})
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && isEOF(err) {
		cw.CloseWrite()
		return
	}
	src.Close()
	dst.Close()
}

func (p *Proxy) since() float64 { return time.Since(p.start).Seconds() }

func (p *Proxy) emit(r capture.Record) {
	p.recMu.Lock()
	defer p.recMu.Unlock()
	p.record(r)
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
