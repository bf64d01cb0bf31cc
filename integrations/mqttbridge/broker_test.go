package mqttbridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"
)

// testHash is a cheap bcrypt hash (minimum cost) for tests.
func testHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func roleUser(t *testing.T, name, role string) User {
	t.Helper()
	r, w, err := RoleFilters(role, "mf")
	if err != nil {
		t.Fatal(err)
	}
	return User{Name: name, PasswordHash: testHash(t, name+"-pw"), Read: r, Write: w}
}

// rawClient is a bare MQTT 5 client: unlike Client it does not retry, so a
// test sees the broker's answer to each packet.
type rawClient struct {
	*paho.Client
	got chan *paho.Publish
}

type dialOpts struct {
	user, pass string
	will       *paho.WillMessage
	tls        *tls.Config
}

func dialRaw(t *testing.T, ctx context.Context, addr, clientID string, o dialOpts) (*rawClient, error) {
	t.Helper()
	var conn net.Conn
	var err error
	if o.tls != nil {
		conn, err = (&tls.Dialer{Config: o.tls}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	rc := &rawClient{got: make(chan *paho.Publish, 64)}
	rc.Client = paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: clientID,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			rc.got <- pr.Packet
			return true, nil
		}}})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true, WillMessage: o.will}
	if o.user != "" {
		cp.Username, cp.UsernameFlag = o.user, true
	}
	if o.pass != "" {
		cp.Password, cp.PasswordFlag = []byte(o.pass), true
	}
	if _, err := rc.Connect(ctx, cp); err != nil {
		return nil, err
	}
	t.Cleanup(func() { rc.Disconnect(&paho.Disconnect{}) })
	return rc, nil
}

func mustDial(t *testing.T, ctx context.Context, addr, clientID string, o dialOpts) *rawClient {
	t.Helper()
	c, err := dialRaw(t, ctx, addr, clientID, o)
	if err != nil {
		t.Fatalf("%s: connect: %v", clientID, err)
	}
	return c
}

func (c *rawClient) publish(ctx context.Context, topic, payload string, retain bool) error {
	_, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain})
	return err
}

func (c *rawClient) subscribe(t *testing.T, ctx context.Context, filter string) byte {
	t.Helper()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// next is the next message delivered to c.
func (c *rawClient) next(t *testing.T, ctx context.Context) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.got:
		return p
	case <-ctx.Done():
		t.Fatal("no message delivered")
		return nil
	}
}

func securedBroker(t *testing.T, tlsCfg BrokerTLS) (*Broker, Credentials) {
	t.Helper()
	gw := Credentials{Username: "gw-internal", Password: "gw-secret"}
	b, err := StartBrokerWith(BrokerConfig{Listen: "127.0.0.1:0", Prefix: "mf", Gateway: &gw, TLS: tlsCfg,
		Users: []User{roleUser(t, "alice", "operator"), roleUser(t, "bob", "operator"), roleUser(t, "vera", "viewer"), roleUser(t, "root", "admin"),
			{Name: "scribe", PasswordHash: testHash(t, "scribe-pw"), Write: []string{"mf/ota/control"}, Read: []string{"mf/status/#"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, gw
}

func TestBrokerRefusesUnknownClients(t *testing.T) {
	b, gw := securedBroker(t, BrokerTLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		o    dialOpts
	}{
		{"anonymous", dialOpts{}},
		{"wrong password", dialOpts{user: "alice", pass: "nope"}},
		{"unknown user", dialOpts{user: "mallory", pass: "alice-pw"}},
		{"gateway name from outside", dialOpts{user: gw.Username, pass: gw.Password}},
	} {
		if _, err := dialRaw(t, ctx, b.Addr(), "x", c.o); err == nil {
			t.Errorf("%s: connected, want refused", c.name)
		}
	}
	// The gateway's own listener takes the gateway alone.
	internal := strings.TrimPrefix(b.InternalURL(), "mqtt://")
	if internal == b.Addr() {
		t.Fatal("no internal listener for the gateway")
	}
	if _, err := dialRaw(t, ctx, internal, "x", dialOpts{user: "alice", pass: "alice-pw"}); err == nil {
		t.Error("a user connected on the gateway's internal listener")
	}
	mustDial(t, ctx, internal, "gw", dialOpts{user: gw.Username, pass: gw.Password})
	mustDial(t, ctx, b.Addr(), "alice", dialOpts{user: "alice", pass: "alice-pw"})
}

func TestBrokerACL(t *testing.T) {
	b, gw := securedBroker(t, BrokerTLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gwc := mustDial(t, ctx, strings.TrimPrefix(b.InternalURL(), "mqtt://"), "gw", dialOpts{user: gw.Username, pass: gw.Password})
	alice := mustDial(t, ctx, b.Addr(), "alice", dialOpts{user: "alice", pass: "alice-pw"})
	vera := mustDial(t, ctx, b.Addr(), "vera", dialOpts{user: "vera", pass: "vera-pw"})

	// A viewer cannot control OTA nor send into the mesh.
	for _, topic := range []string{"mf/ota/control", "mf/to/broadcast", "mf/to/17"} {
		if err := vera.publish(ctx, topic, "{}", false); err == nil {
			t.Errorf("viewer published to %s", topic)
		}
	}
	// Nobody but the gateway writes its retained state, replies or progress.
	for _, topic := range []string{"mf/status/nodes", "mf/bridge/state", "mf/ota/announce", "mf/ota/status", "mf/ota/control/response", "mf/from/17"} {
		if err := alice.publish(ctx, topic, "spoof", true); err == nil {
			t.Errorf("operator published to the gateway's topic %s", topic)
		}
	}
	// Nor through a last will.
	if _, err := dialRaw(t, ctx, b.Addr(), "alice2", dialOpts{user: "alice", pass: "alice-pw",
		will: &paho.WillMessage{Topic: "mf/bridge/state", Payload: []byte("online"), Retain: true, QoS: 1}}); err == nil {
		t.Error("operator connected with a last will on the gateway's availability topic")
	}

	// An operator's request reaches the gateway stamped with its real
	// username, whatever the client claimed.
	if code := gwc.subscribe(t, ctx, "mf/ota/control"); code >= 0x80 {
		t.Fatalf("gateway subscription refused: %#x", code)
	}
	if _, err := alice.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", Payload: []byte("{}"), QoS: 1,
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: PropUser, Value: "admin"}, {Key: "other", Value: "kept"}}}}); err != nil {
		t.Fatalf("operator publish to ota/control: %v", err)
	}
	p := gwc.next(t, ctx)
	if got := p.Properties.User.GetAll(PropUser); len(got) != 1 || got[0] != "alice" || p.Properties.User.Get(PropClient) != "alice" || p.Properties.User.Get("other") != "kept" {
		t.Fatalf("stamped properties %+v", p.Properties.User)
	}

	// A viewer may subscribe broadly but receives only what it may read;
	// it cannot subscribe to the control topics at all.
	if code := vera.subscribe(t, ctx, "mf/ota/control"); code < 0x80 {
		t.Errorf("viewer subscribed to ota/control (%#x)", code)
	}
	if code := vera.subscribe(t, ctx, "#"); code >= 0x80 {
		t.Fatalf("viewer subscription to # refused: %#x", code)
	}
	// In order from one publisher: the response (not readable) comes first.
	gwc.publish(ctx, "mf/ota/control/response", "secret", false)
	gwc.publish(ctx, "mf/status/nodes", "nodes", false)
	if p := vera.next(t, ctx); p.Topic != "mf/status/nodes" {
		t.Fatalf("viewer received %s %q", p.Topic, p.Payload)
	}
	if !b.MayRead("alice", "mf/ota/control/response/alice") || b.MayRead("vera", "mf/ota/control/response") || b.MayRead("", "mf/status/nodes") {
		t.Error("MayRead disagrees with the users' filters")
	}
}

func TestBrokerAnonymousKeepsGatewayTopics(t *testing.T) {
	gw := Credentials{Username: "gw-internal", Password: "gw-secret"}
	b, err := StartBrokerWith(BrokerConfig{Listen: "127.0.0.1:0", Prefix: "mf", Gateway: &gw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	anon := mustDial(t, ctx, b.Addr(), "anon", dialOpts{})
	if err := anon.publish(ctx, "mf/ota/control", "{}", false); err != nil {
		t.Errorf("anonymous control request refused on an open broker: %v", err)
	}
	if err := anon.publish(ctx, "mf/status/nodes", "spoof", true); err == nil {
		t.Error("anonymous client spoofed a retained status topic")
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key, and returns their paths and the pool that trusts it.
func writeSelfSigned(t *testing.T, dir, name string) (certFile, keyFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool, cert
}

func TestBrokerTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, serverPool, _ := writeSelfSigned(t, dir, "server")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	b, _ := securedBroker(t, BrokerTLS{CertFile: certFile, KeyFile: keyFile})
	if !strings.HasPrefix(b.URL(), "tls://") {
		t.Fatalf("URL of a TLS broker: %s", b.URL())
	}
	mustDial(t, ctx, b.Addr(), "alice", dialOpts{user: "alice", pass: "alice-pw", tls: &tls.Config{RootCAs: serverPool}})
	if _, err := dialRaw(t, ctx, b.Addr(), "plain", dialOpts{user: "alice", pass: "alice-pw"}); err == nil {
		t.Error("a plain-TCP client connected to the TLS listener")
	}
	// The bridge's own client type reaches it too, given the CA.
	c, err := Dial(ctx, ClientConfig{URL: b.URL(), CAFile: certFile, Username: "alice", Password: "alice-pw", ClientID: "bridge-client"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}

	// Mutual TLS: a client without a certificate from the CA is refused.
	caFile, _, _, clientCert := writeSelfSigned(t, dir, "client")
	mb, _ := securedBroker(t, BrokerTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if _, err := dialRaw(t, ctx, mb.Addr(), "nocert", dialOpts{user: "alice", pass: "alice-pw", tls: &tls.Config{RootCAs: serverPool}}); err == nil {
		t.Error("mutual TLS: a client without a certificate connected")
	}
	mustDial(t, ctx, mb.Addr(), "withcert", dialOpts{user: "alice", pass: "alice-pw",
		tls: &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{clientCert}}})
}

func TestBrokerConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  BrokerConfig
		want string
	}{
		{BrokerConfig{Users: []User{{Name: "a", PasswordHash: "plain"}}}, "not a bcrypt hash"},
		{BrokerConfig{Users: []User{{Name: "a", PasswordHash: testHash(t, "x"), Read: []string{"a/#/b"}}}}, "not an MQTT topic filter"},
		{BrokerConfig{TLS: BrokerTLS{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}}, "cert_file"},
		{BrokerConfig{TLS: BrokerTLS{ClientCAFile: "ca.pem"}}, "needs cert_file"},
	} {
		c.cfg.Listen = "127.0.0.1:0"
		b, err := StartBrokerWith(c.cfg, nil)
		if err == nil {
			b.Close()
			t.Errorf("%+v: started", c.cfg)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"#", "mf/status/nodes", true}, {"mf/status/#", "#", true}, {"mf/status/#", "mf/+/nodes", true},
		{"mf/status/#", "mf/ota/control", false}, {"mf/ota/announce", "mf/ota/+", true}, {"mf/ota/announce", "mf/ota", false},
		{"mf/status/#", "mf/status", true}, {"a/b", "a/b/c", false}, {"+/+", "a", false},
	} {
		if got := filtersOverlap(c.a, c.b); got != c.want {
			t.Errorf("filtersOverlap(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// connack connects with o and returns the broker's CONNACK reason code.
func connack(t *testing.T, ctx context.Context, addr, clientID string, o dialOpts) (byte, string) {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: clientID})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true, WillMessage: o.will,
		Username: o.user, UsernameFlag: o.user != "", Password: []byte(o.pass), PasswordFlag: o.pass != ""}
	ca, err := c.Connect(ctx, cp)
	if ca == nil {
		t.Fatalf("%s: no CONNACK: %v", clientID, err)
	}
	if ca.ReasonCode == 0 {
		c.Disconnect(&paho.Disconnect{})
	}
	return ca.ReasonCode, ca.Properties.ReasonString
}

// A forbidden last will is refused as such, not as bad credentials.
func TestBrokerForbiddenWillReasonCode(t *testing.T) {
	b, _ := securedBroker(t, BrokerTLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	will := &paho.WillMessage{Topic: "mf/bridge/state", Payload: []byte("online"), Retain: true, QoS: 1}
	if code, why := connack(t, ctx, b.Addr(), "alice2", dialOpts{user: "alice", pass: "alice-pw", will: will}); code != 0x90 || !strings.Contains(why, "mf/bridge/state") {
		t.Errorf("forbidden will: CONNACK %#x %q, want 0x90 (topic name invalid) naming the topic", code, why)
	}
	// Bad credentials stay "bad username or password", will or not.
	if code, _ := connack(t, ctx, b.Addr(), "alice3", dialOpts{user: "alice", pass: "nope", will: will}); code != 0x86 {
		t.Errorf("wrong password: CONNACK %#x, want 0x86", code)
	}
	// An allowed will connects.
	ok := &paho.WillMessage{Topic: "mf/to/broadcast", Payload: []byte("bye"), QoS: 1}
	if code, _ := connack(t, ctx, b.Addr(), "alice4", dialOpts{user: "alice", pass: "alice-pw", will: ok}); code != 0 {
		t.Errorf("allowed will: CONNACK %#x", code)
	}
}
