package mqttbridge

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// BrokerConfig is the embedded broker's listener and its access control.
type BrokerConfig struct {
	Listen string // host:port; ":0" picks a free port
	TLS    BrokerTLS
	// Users may connect with their name and password and use the topics
	// their filters allow. With no users every client may connect without
	// credentials and use every topic except the gateway's own.
	Users []User
	// Prefix is the bridge's topic prefix. With Gateway set, the topics the
	// gateway publishes under it (GatewayOnlyTopics) are writable by the
	// gateway's client alone, so no one can spoof its retained state.
	Prefix string
	// Gateway is the gateway's own client. It connects on a loopback
	// listener of its own (InternalURL), never on the public one, so it
	// needs no client certificate and its password never crosses a network.
	Gateway *Credentials
}

// BrokerTLS serves the listener over TLS when CertFile is set; with
// ClientCAFile, clients must also present a certificate signed by that CA.
type BrokerTLS struct {
	CertFile, KeyFile, ClientCAFile string
}

// User is one account of the embedded broker.
type User struct {
	Name         string
	PasswordHash string   // bcrypt ($2a$/$2b$/$2y$), from HashPassword
	Read, Write  []string // MQTT topic filters (+ and # allowed)
}

// Credentials are a username and password in clear, for the gateway's own
// client (generated at start, never stored).
type Credentials struct {
	Username, Password string
}

// User properties the embedded broker sets on every publish it accepts,
// replacing any the client sent: the bridge learns from them who sent a
// request. An external broker does not set them, and there any client can
// forge them, so the bridge trusts them only with BridgeConfig.TrustSender.
const (
	PropUser   = "meshfleet-user"   // the authenticated username; absent for anonymous clients
	PropClient = "meshfleet-client" // the MQTT client id
)

// HashPassword returns the bcrypt hash of password for User.PasswordHash.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("password is empty")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// CheckPasswordHash reports whether h is a bcrypt hash the broker accepts.
func CheckPasswordHash(h string) error {
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return fmt.Errorf("not a bcrypt hash (make one with `meshfleet gateway hash-password`): %v", err)
	}
	return nil
}

// Roles are the named sets of topic filters a user may be given instead of
// (or in addition to) explicit filters.
var Roles = []string{"admin", "operator", "viewer"}

// RoleFilters are the filters of role under prefix: admin reads and writes
// everything (except the gateway's own topics, as everyone), operator
// reads everything under the prefix and writes OTA control requests
// (ota/control and Home Assistant's ota/install/<id>), registry requests
// and messages into the mesh, viewer reads the status, availability and OTA
// state.
func RoleFilters(role, prefix string) (read, write []string, err error) {
	p := prefix + "/"
	switch role {
	case "admin":
		return []string{"#"}, []string{"#"}, nil
	case "operator":
		return []string{p + "#"}, []string{p + TopicOTAControl, p + TopicOTAInstall + "+", p + TopicRegistryControl, p + TopicTo + "+"}, nil
	case "viewer":
		return []string{p + "status/#", p + "bridge/#", p + TopicOTAAnnounce, p + TopicOTAStatus}, nil, nil
	}
	return nil, nil, fmt.Errorf("role %q is not one of %s", role, strings.Join(Roles, ", "))
}

// GatewayOnlyTopics are the filters under prefix only the gateway itself
// publishes to: its retained state, OTA progress, replies and the messages
// it forwards out of the mesh.
func GatewayOnlyTopics(prefix string) []string {
	p := prefix + "/"
	return []string{p + "status/#", p + "bridge/#", p + TopicOTAAnnounce, p + TopicOTAStatus, p + TopicOTAResponse, p + TopicOTAResponse + "/#",
		p + TopicRegistryResponse, p + TopicRegistryResponse + "/#", p + "from/#"}
}

// Broker is an MQTT broker running inside the process.
type Broker struct {
	srv          *mqtt.Server
	auth         *authHook
	addr         string
	scheme       string
	internalAddr string
}

// StartBroker starts an embedded broker listening on addr (":0" picks a
// free port) that accepts every client on every topic. The gateway uses
// StartBrokerWith; this is for tests and tools on loopback.
func StartBroker(addr string, log *slog.Logger) (*Broker, error) {
	return StartBrokerWith(BrokerConfig{Listen: addr}, log)
}

// StartBrokerWith starts an embedded broker as cfg says.
func StartBrokerWith(cfg BrokerConfig, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := newAuthHook(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	tlsCfg, err := brokerTLS(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log.With("component", "broker")})
	h.srv = srv
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	pub := newTCPListener(publicListener, cfg.Listen, tlsCfg)
	if err := srv.AddListener(pub); err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", cfg.Listen, err)
	}
	b := &Broker{srv: srv, auth: h, scheme: "mqtt://"}
	if tlsCfg != nil {
		b.scheme = "tls://"
	}
	var internal *tcpListener
	if cfg.Gateway != nil {
		internal = newTCPListener(internalListener, "127.0.0.1:0", nil)
		if err := srv.AddListener(internal); err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded broker: internal listener: %w", err)
		}
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	b.addr = pub.Address()
	b.internalAddr = b.addr
	if internal != nil {
		b.internalAddr = internal.Address()
	}
	return b, nil
}

const (
	publicListener   = "tcp"
	internalListener = "internal"
)

func brokerTLS(c BrokerTLS) (*tls.Config, error) {
	if c.CertFile == "" {
		if c.ClientCAFile != "" {
			return nil, errors.New("tls client_ca_file needs cert_file and key_file")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls cert_file/key_file: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls client_ca_file %s: no PEM certificates in it", c.ClientCAFile)
		}
		t.ClientCAs, t.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return t, nil
}

// Addr is the address the broker listens on (host:port).
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's address as a client URL (tls:// when it serves TLS).
func (b *Broker) URL() string { return b.scheme + b.addr }

// InternalURL is where the gateway's own client connects: a loopback
// listener of its own when BrokerConfig.Gateway is set, else URL.
func (b *Broker) InternalURL() string {
	if b.internalAddr != b.addr {
		return "mqtt://" + b.internalAddr
	}
	return b.URL()
}

// MayRead reports whether user (an authenticated username, "" for an
// anonymous client) may receive messages on topic.
func (b *Broker) MayRead(user, topic string) bool { return b.auth.mayRead(user, topic) }

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error { return b.srv.Close() }

// authHook authenticates clients against the configured users (bcrypt),
// checks every publish and subscription against their filters, and stamps
// publishes with who sent them.
type authHook struct {
	mqtt.HookBase
	users       map[string]User
	gateway     *Credentials
	gatewayOnly []string
	// bcrypt is slow on purpose; bound how many checks run at once so a
	// flood of connection attempts cannot take every CPU.
	checks chan struct{}
	// dummyHash is compared against for unknown users, at the cost of the
	// users' own hashes, so a wrong username takes as long as a wrong password.
	dummyHash []byte
	// srv sends the CONNACK of a refused connection (OnConnect).
	srv *mqtt.Server
}

// CheckUsers reports the first user that cannot be used: an empty or
// repeated name, a password hash that is not bcrypt, an invalid filter.
func CheckUsers(users []User) error {
	seen := map[string]bool{}
	for i, u := range users {
		if u.Name == "" {
			return fmt.Errorf("users[%d].name: is empty", i)
		}
		if seen[u.Name] {
			return fmt.Errorf("users[%d].name: user %q is listed twice", i, u.Name)
		}
		seen[u.Name] = true
		if err := CheckPasswordHash(u.PasswordHash); err != nil {
			return fmt.Errorf("users[%d].password_hash (%s): %w", i, u.Name, err)
		}
		for _, f := range append(append([]string{}, u.Read...), u.Write...) {
			if !mqtt.IsValidFilter(f, false) {
				return fmt.Errorf("users[%d] (%s): %q is not an MQTT topic filter", i, u.Name, f)
			}
		}
	}
	return nil
}

func newAuthHook(cfg BrokerConfig) (*authHook, error) {
	if err := CheckUsers(cfg.Users); err != nil {
		return nil, err
	}
	h := &authHook{users: map[string]User{}, gateway: cfg.Gateway, checks: make(chan struct{}, 2)}
	cost := bcrypt.MinCost
	for _, u := range cfg.Users {
		h.users[u.Name] = u
		c, _ := bcrypt.Cost([]byte(u.PasswordHash)) // checked by CheckUsers
		cost = max(cost, c)
	}
	if len(cfg.Users) > 0 {
		var err error
		if h.dummyHash, err = bcrypt.GenerateFromPassword([]byte("meshfleet"), cost); err != nil {
			return nil, err
		}
	}
	if cfg.Gateway != nil {
		if _, clash := h.users[cfg.Gateway.Username]; clash {
			return nil, fmt.Errorf("user name %q is reserved for the gateway", cfg.Gateway.Username)
		}
		h.gatewayOnly = GatewayOnlyTopics(cfg.Prefix)
	}
	return h, nil
}

// ID implements mqtt.Hook.
func (h *authHook) ID() string { return "meshfleet-auth" }

// Provides implements mqtt.Hook.
func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish}, []byte{b})
}

func (h *authHook) isGateway(cl *mqtt.Client) bool {
	return h.gateway != nil && cl.Net.Listener == internalListener && string(cl.Properties.Username) == h.gateway.Username
}

// OnConnect implements mqtt.Hook: it authenticates the client and checks
// its last will. mochi's OnConnectAuthenticate can only answer "bad
// username or password", so the checks run here, where the CONNACK can
// say what is wrong: 0x86 for credentials, 0x90 (topic name invalid, the
// MQTT 5 code for a will topic the server does not accept) for a will.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	name, pass := string(pk.Connect.Username), pk.Connect.Password
	ok, why := h.authenticate(cl, name, pass)
	code := packets.ErrBadUsernameOrPassword
	if ok && pk.Connect.WillFlag && !h.mayWrite(cl, pk.Connect.WillTopic) {
		// The broker publishes a will on the client's behalf without an
		// ACL check of its own: a will on the gateway's availability
		// topic would spoof it.
		ok, why = false, "last will on "+pk.Connect.WillTopic+" not allowed"
		code = packets.Code{Code: packets.ErrTopicNameInvalid.Code, Reason: why}
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.Err3NotAuthorized // MQTT 3 has no such code
		}
	}
	if ok {
		return nil
	}
	h.Log.Warn("mqtt client refused", "client", cl.ID, "username", name, "remote", cl.Net.Remote, "reason", why)
	// mochi closes the connection on an OnConnect error without a
	// CONNACK; the client is owed one.
	if err := h.srv.SendConnack(cl, code, false, nil); err != nil {
		return fmt.Errorf("refuse %s: %w", cl.ID, err)
	}
	return code
}

// OnConnectAuthenticate implements mqtt.Hook. mochi calls it only after
// OnConnect accepted the client, which is the whole check.
func (h *authHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *authHook) authenticate(cl *mqtt.Client, name string, pass []byte) (bool, string) {
	if cl.Net.Listener == internalListener {
		if h.gateway != nil && name == h.gateway.Username && subtle.ConstantTimeCompare(pass, []byte(h.gateway.Password)) == 1 {
			return true, ""
		}
		return false, "the internal listener is the gateway's own"
	}
	if h.gateway != nil && name == h.gateway.Username {
		return false, "reserved username"
	}
	if len(h.users) == 0 {
		return true, "" // anonymous broker: any name is taken as no name
	}
	u, known := h.users[name]
	var hash []byte
	if known {
		hash = []byte(u.PasswordHash)
	} else {
		hash = h.dummyHash
	}
	h.checks <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, pass)
	<-h.checks
	switch {
	case name == "":
		return false, "no username (the broker has users; anonymous clients are refused)"
	case !known || err != nil:
		return false, "wrong username or password"
	}
	return true, ""
}

// user is the authenticated username of cl, "" for an anonymous client.
func (h *authHook) user(cl *mqtt.Client) string {
	if len(h.users) == 0 && !h.isGateway(cl) {
		return ""
	}
	return string(cl.Properties.Username)
}

// OnACLCheck implements mqtt.Hook. topic is a topic name for a publish or
// a delivery, and a filter for a subscription: a subscription is allowed
// when it can match something the client may read, and each delivery is
// checked again.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		ok := h.mayWrite(cl, topic)
		if !ok {
			// Debug: a client may publish as fast as it likes; the
			// refusal reaches it as a reason code (MQTT 5) or a disconnect.
			h.Log.Debug("mqtt publish refused", "client", cl.ID, "username", string(cl.Properties.Username), "topic", topic)
		}
		return ok
	}
	if h.isGateway(cl) {
		return true
	}
	return h.mayRead(h.user(cl), stripShare(topic))
}

func (h *authHook) mayWrite(cl *mqtt.Client, topic string) bool {
	if h.isGateway(cl) {
		return true
	}
	for _, f := range h.gatewayOnly {
		if TopicMatches(f, topic) {
			return false
		}
	}
	if len(h.users) == 0 {
		return true
	}
	u, ok := h.users[string(cl.Properties.Username)]
	return ok && matchesAny(u.Write, topic)
}

func (h *authHook) mayRead(user, filter string) bool {
	if h.gateway != nil && user == h.gateway.Username {
		return true
	}
	if len(h.users) == 0 {
		return true
	}
	u, ok := h.users[user]
	if !ok {
		return false
	}
	for _, f := range u.Read {
		if filtersOverlap(f, filter) {
			return true
		}
	}
	return false
}

// OnPublish implements mqtt.Hook: it stamps who sent the message.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	props := pk.Properties.User[:0:0]
	for _, p := range pk.Properties.User {
		if p.Key != PropUser && p.Key != PropClient {
			props = append(props, p)
		}
	}
	if u := h.user(cl); u != "" {
		props = append(props, packets.UserProperty{Key: PropUser, Val: u})
	}
	pk.Properties.User = append(props, packets.UserProperty{Key: PropClient, Val: cl.ID})
	return pk, nil
}

func matchesAny(filters []string, topic string) bool {
	for _, f := range filters {
		if TopicMatches(f, topic) {
			return true
		}
	}
	return false
}

// stripShare turns a shared subscription $share/<group>/<filter> into its filter.
func stripShare(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
	}
	return filter
}

// filtersOverlap reports whether some topic matches both filters (a topic
// name is a filter that matches itself).
func filtersOverlap(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; ; i++ {
		switch {
		case i < len(as) && as[i] == "#", i < len(bs) && bs[i] == "#":
			return true
		case i == len(as) || i == len(bs):
			return len(as) == len(bs)
		case as[i] != "+" && bs[i] != "+" && as[i] != bs[i]:
			return false
		}
	}
}
