// Package mqttbridge connects the gateway to MQTT: an embedded broker
// (mochi-mqtt) when no external one is configured, a reconnecting MQTT v5
// client (paho autopaho), and on top of them the status bridge, the OTA
// control topics and the mesh message topics.
package mqttbridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// ClientConfig is how the bridge's client reaches a broker.
type ClientConfig struct {
	URL                string // mqtt://host:1883, tcp://, mqtts://, ssl://, tls://, ws://, wss://
	Username, Password string
	CAFile             string
	CertFile, KeyFile  string
	InsecureSkipVerify bool
	ClientID           string
	// WillTopic receives WillPayload (retained) when the client vanishes;
	// the bridge uses it for its availability topic.
	WillTopic   string
	WillPayload []byte
	// OnUp runs after every (re)connection, e.g. to publish "online" and
	// re-announce retained state. It must not block for long.
	OnUp func()
	// OnDown runs when an established connection is lost.
	OnDown func()
	Logger *slog.Logger
}

// Message is one received publish.
type Message struct {
	Topic         string
	Payload       []byte
	ResponseTopic string // MQTT v5 response topic, if the sender set one
	Correlation   []byte // MQTT v5 correlation data, if the sender set it
	// Sender is who published it, as the embedded broker stamps it (user
	// properties PropUser and PropClient). Through any other broker a
	// client can set these itself: see BridgeConfig.TrustSender.
	Sender Sender
}

// Sender identifies the client that published a message.
type Sender struct {
	User     string // authenticated username; "" for an anonymous client
	ClientID string
}

// Client is a reconnecting MQTT client. Subscriptions are remembered and
// renewed after every reconnection.
type Client struct {
	cm   *autopaho.ConnectionManager
	log  *slog.Logger
	mu   sync.Mutex
	subs map[string]func(Message) // filter → handler
	up   bool
	// upCh is closed once up is set and the subscriptions are made.
	// autopaho's own AwaitConnection returns before OnConnectionUp runs,
	// when Publish still finds the client not connected.
	upCh chan struct{}
}

// Dial starts the client; it connects (and keeps reconnecting with
// backoff) in the background until ctx ends. Use AwaitConnection to wait.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt: broker URL %q: want e.g. mqtt://host:1883", cfg.URL)
	}
	switch u.Scheme {
	case "tcp":
		u.Scheme = "mqtt"
	case "ssl", "tls", "mqtts":
		u.Scheme = "tls"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{log: log, subs: map[string]func(Message){}, upCh: make(chan struct{})}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     20,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(250*time.Millisecond, 30*time.Second, 500*time.Millisecond, 2),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			c.mu.Lock()
			c.up = true
			ready := c.upCh
			filters := make([]string, 0, len(c.subs))
			for f := range c.subs {
				filters = append(filters, f)
			}
			c.mu.Unlock()
			log.Info("mqtt connected", "broker", cfg.URL)
			// AwaitConnection returns once the subscriptions are in place
			// (SUBACK), not at CONNACK: a client that publishes a request
			// right after it must hear the answer.
			go func() {
				if len(filters) > 0 {
					c.subscribe(ctx, filters) // a refusal is logged; the client is up all the same
				}
				c.mu.Lock()
				if c.up && c.upCh == ready {
					select {
					case <-ready:
					default:
						close(ready)
					}
				}
				c.mu.Unlock()
				if cfg.OnUp != nil {
					cfg.OnUp()
				}
			}()
		},
		OnConnectionDown: func() bool {
			c.mu.Lock()
			select {
			case <-c.upCh: // waiters from now on wait for the next connection
				c.upCh = make(chan struct{})
			default: // never ready: its waiters wait on
			}
			c.up = false
			c.mu.Unlock()
			log.Warn("mqtt connection lost; reconnecting", "broker", cfg.URL)
			if cfg.OnDown != nil {
				go cfg.OnDown()
			}
			return true
		},
		OnConnectError: func(err error) { log.Debug("mqtt connect failed", "broker", cfg.URL, "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					c.dispatch(pr.Packet)
					return true, nil
				},
			},
			OnClientError: func(err error) { log.Debug("mqtt client error", "err", err) },
		},
	}
	if cfg.Username != "" {
		pc.ConnectUsername = cfg.Username
		pc.ConnectPassword = []byte(cfg.Password)
	}
	if cfg.WillTopic != "" {
		pc.WillMessage = &paho.WillMessage{Topic: cfg.WillTopic, Payload: cfg.WillPayload, QoS: 1, Retain: true}
		// No WillProperties, so no will delay: a delayed will is held
		// back by the broker and dropped if the client reconnects in
		// time, so availability would read "online" while the client is
		// gone. Without it the will is published as soon as the
		// connection is lost.
	}
	cm, err := autopaho.NewConnection(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	c.cm = cm
	return c, nil
}

func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && !cfg.InsecureSkipVerify {
		return nil, nil // system roots, set by autopaho for tls:// URLs
	}
	t := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls ca_file %s: no PEM certificates in it", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// AwaitConnection waits until the client is connected and has made its
// subscriptions, or ctx ends.
func (c *Client) AwaitConnection(ctx context.Context) error {
	c.mu.Lock()
	up := c.upCh
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.cm.Done():
		return errors.New("mqtt: client closed")
	}
}

// Connected reports whether the client is connected right now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// ErrNotConnected is returned by Publish while the broker is unreachable.
var ErrNotConnected = errors.New("mqtt: not connected to the broker")

// Publish sends one message (QoS 1). While disconnected it returns
// ErrNotConnected at once instead of blocking: the bridge republishes its
// retained state on reconnection, so nothing of value is lost.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	return c.publish(ctx, &paho.Publish{Topic: topic, Payload: payload, Retain: retain, QoS: 1})
}

// Reply answers a request: on its MQTT v5 response topic when it gave one
// (with its correlation data), else on fallback.
func (c *Client) Reply(ctx context.Context, req Message, fallback string, payload []byte) error {
	p := &paho.Publish{Topic: fallback, Payload: payload, QoS: 1}
	if req.ResponseTopic != "" {
		p.Topic = req.ResponseTopic
	}
	if len(req.Correlation) > 0 {
		p.Properties = &paho.PublishProperties{CorrelationData: req.Correlation}
	}
	return c.publish(ctx, p)
}

func (c *Client) publish(ctx context.Context, p *paho.Publish) error {
	if !c.Connected() {
		return ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.cm.Publish(ctx, p); err != nil {
		return fmt.Errorf("mqtt publish %s: %w", p.Topic, err)
	}
	return nil
}

// Subscribe registers handler for filter (MQTT wildcards allowed). It is
// renewed on every reconnection. Handlers run on the client's goroutine:
// keep them short or hand work off.
func (c *Client) Subscribe(ctx context.Context, filter string, handler func(Message)) error {
	c.mu.Lock()
	c.subs[filter] = handler
	up := c.up
	c.mu.Unlock()
	if !up {
		return nil // subscribed on connection
	}
	return c.subscribe(ctx, []string{filter})
}

func (c *Client) subscribe(ctx context.Context, filters []string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.cm.Subscribe(ctx, s); err != nil {
		c.log.Warn("mqtt subscribe failed", "filters", filters, "err", err)
		return fmt.Errorf("mqtt subscribe %v: %w", filters, err)
	}
	return nil
}

func (c *Client) dispatch(p *paho.Publish) {
	m := Message{Topic: p.Topic, Payload: p.Payload}
	if p.Properties != nil {
		m.ResponseTopic = p.Properties.ResponseTopic
		m.Correlation = p.Properties.CorrelationData
		m.Sender = Sender{User: p.Properties.User.Get(PropUser), ClientID: p.Properties.User.Get(PropClient)}
	}
	c.mu.Lock()
	var hs []func(Message)
	for f, h := range c.subs {
		if TopicMatches(f, p.Topic) {
			hs = append(hs, h)
		}
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(m)
	}
}

// Close disconnects cleanly (the broker then does not send the will).
func (c *Client) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := c.cm.Disconnect(ctx)
	if errors.Is(err, autopaho.ConnectionDownError) {
		return nil
	}
	return err
}

// TopicMatches reports whether topic matches an MQTT filter with + and #.
func TopicMatches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}
