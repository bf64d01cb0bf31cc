package mqttbridge

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is the embedded broker's TCP (or TLS) listener, in place of
// mochi's listeners.TCP. That one hands each accepted connection to a
// goroutine which registers it with the server's client WaitGroup, so a
// client connecting while Server.Close runs registers concurrently with
// Close's Wait: a data race under -race, and a Close that can miss a
// client (mochi-mqtt/server#424, #488, #541; open in v2.7.9). This one's
// Close returns only once every connection it accepted is done, so the
// server's Wait starts after the last of them, and it closes connections
// accepted during Close rather than leaving them open.
type tcpListener struct {
	id, address string
	tls         *tls.Config
	ln          net.Listener // set by Init, before Serve and Close
	log         *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // accepted and not yet done
	served sync.WaitGroup        // one per accepted connection
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, address string, tlsCfg *tls.Config) *tcpListener {
	return &tcpListener{id: id, address: address, tls: tlsCfg, conns: map[net.Conn]struct{}{}}
}

// ID implements listeners.Listener.
func (l *tcpListener) ID() string { return l.id }

// Protocol implements listeners.Listener.
func (l *tcpListener) Protocol() string { return "tcp" }

// Address implements listeners.Listener: the bound address once Init ran.
func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Init implements listeners.Listener: it binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.ln = ln
	return nil
}

// Serve implements listeners.Listener: it accepts connections until Close.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if !closed {
				l.log.Error("mqtt listener stopped accepting", "error", err)
			}
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.served.Add(1) // under mu, so before Close's Wait
		l.mu.Unlock()
		go func() {
			defer l.served.Done()
			if err := establish(l.id, c); err != nil {
				l.log.Warn("mqtt connection ended", "remote", c.RemoteAddr().String(), "error", err)
			}
			c.Close()
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

// Close implements listeners.Listener: it stops accepting, has the server
// disconnect this listener's clients, closes connections still in their
// MQTT handshake, and waits until every connection is done.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
	}
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.served.Wait()
}
