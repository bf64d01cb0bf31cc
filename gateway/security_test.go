package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"

	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/scenario"
)

func hashOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestSecureByDefault: an interface reachable beyond loopback without
// credentials is refused, naming the key and the fix, unless the config
// says insecure for it.
func TestSecureByDefault(t *testing.T) {
	base := func(t *testing.T) Config { return testConfig(t) }
	yes := true
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string // "" entries: must start
	}{
		{"http on every interface, no token", func(c *Config) { c.HTTP.Listen = "0.0.0.0:8080" },
			[]string{"config: http.token:", `"0.0.0.0:8080"`, "set http.token", "http.insecure: true"}},
		{"http on :8080, no token", func(c *Config) { c.HTTP.Listen = ":8080" }, []string{"http.token"}},
		{"http on a LAN address, no token", func(c *Config) { c.HTTP.Listen = "192.168.1.10:8080" }, []string{"http.token"}},
		{"http insecure", func(c *Config) { c.HTTP.Listen, c.HTTP.Insecure = "0.0.0.0:8080", true }, nil},
		{"http with a token", func(c *Config) { c.HTTP.Listen, c.HTTP.Token = "0.0.0.0:8080", "t0ken" }, nil},
		{"http on localhost", func(c *Config) { c.HTTP.Listen = "localhost:8080" }, nil},
		{"http on ::1", func(c *Config) { c.HTTP.Listen = "[::1]:8080" }, nil},
		{"metrics_auth without token", func(c *Config) { c.HTTP.MetricsAuth = &yes }, []string{"http.metrics_auth", "http.token"}},
		{"broker on every interface, no users", func(c *Config) { c.MQTT.Embedded.Listen = "0.0.0.0:1883" },
			[]string{"config: mqtt.embedded.users:", "hash-password", "mqtt.embedded.insecure: true"}},
		{"broker insecure", func(c *Config) { c.MQTT.Embedded.Listen, c.MQTT.Embedded.Insecure = "0.0.0.0:1883", true }, nil},
		{"broker with users", func(c *Config) {
			c.MQTT.Embedded.Listen = "0.0.0.0:1883"
			c.MQTT.Embedded.Users = []BrokerUser{{Name: "a", PasswordHash: hashOf(t, "pw"), Role: "operator"}}
		}, nil},
		{"external broker: the embedded one is not used", func(c *Config) {
			c.MQTT.Embedded.Listen, c.MQTT.URL = "0.0.0.0:1883", "tcp://broker:1883"
		}, nil},
		{"user with a clear password", func(c *Config) {
			c.MQTT.Embedded.Users = []BrokerUser{{Name: "a", PasswordHash: "secret", Role: "admin"}}
		}, []string{"mqtt.embedded.users[0].password_hash", "hash-password"}},
		{"user with a bad role", func(c *Config) {
			c.MQTT.Embedded.Users = []BrokerUser{{Name: "a", PasswordHash: hashOf(t, "pw"), Role: "boss"}}
		}, []string{"mqtt.embedded.users[0].role", "admin, operator, viewer"}},
		{"user without rights", func(c *Config) {
			c.MQTT.Embedded.Users = []BrokerUser{{Name: "a", PasswordHash: hashOf(t, "pw")}}
		}, []string{"mqtt.embedded.users[0]", "role"}},
		{"client CA without a certificate", func(c *Config) { c.MQTT.Embedded.TLS.ClientCAFile = "ca.pem" }, []string{"mqtt.embedded.tls.client_ca_file"}},
		{"no idle timeout", func(c *Config) { c.MQTT.Uploads.IdleTimeout = 0 }, []string{"mqtt.uploads.idle_timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base(t)
			c.mutate(&cfg)
			_, err := New(cfg, nil)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestBrokerUsersInConfigFile(t *testing.T) {
	p := writeConfig(t, `
node:
  id: 1
mqtt:
  embedded:
    listen: "0.0.0.0:1883"
    users:
      - name: alice
        password_hash: "`+hashOf(t, "pw")+`"
        role: operator
        read: [homeassistant/#]
`)
	cfg, err := LoadConfig(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := cfg.MQTT.Embedded.Users; len(u) != 1 || u[0].Name != "alice" || u[0].Read[0] != "homeassistant/#" {
		t.Fatalf("users: %+v", u)
	}
	bad := writeConfig(t, "node:\n  id: 1\nmqtt:\n  embedded:\n    users:\n      - name: a\n        password: pw\n")
	if _, err := LoadConfig(bad, nil, nil); err == nil || !strings.Contains(err.Error(), `unknown key "mqtt.embedded.users[0].password"`) {
		t.Fatalf("a clear password key: %v", err)
	}
	if _, err := LoadConfig("", nil, []string{"node.id=1", "http.listen=0.0.0.0:8080"}); err == nil || !strings.Contains(err.Error(), "http.insecure") {
		t.Fatalf("--set http.listen beyond loopback without a token: %v", err)
	}
	if _, err := LoadConfig("", nil, []string{"node.id=1", "http.listen=0.0.0.0:8080", "http.insecure=true"}); err != nil {
		t.Fatalf("insecure by choice: %v", err)
	}
}

// dialMQTT connects a bare MQTT 5 client once (no retries) and returns the
// broker's answer.
func dialMQTT(t *testing.T, ctx context.Context, addr, clientID, user, pass string) (*paho.Client, error) {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: clientID})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(pass), true
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

// TestGatewaySecured runs a gateway with broker users and an API token:
// its own client publishes under random credentials, an anonymous client
// is refused, /metrics needs the token, and actions from MQTT and REST
// are audited.
func TestGatewaySecured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.HTTP.Token = "t0ken"
	yes := true
	cfg.HTTP.MetricsAuth = &yes
	cfg.MQTT.Embedded.Users = []BrokerUser{
		{Name: "ops", PasswordHash: hashOf(t, "ops-pw"), Role: "operator"},
		{Name: "dash", PasswordHash: hashOf(t, "dash-pw"), Role: "viewer"},
	}
	logs := newLogCapture()
	g, _, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: 2, Seed: 3, Speed: 25, Model: "esp32"}, slog.New(logs.handler()))
	waitReady(t, ctx, g, done)

	if _, err := dialMQTT(t, ctx, g.MQTTAddr, "anon", "", ""); err == nil {
		t.Fatal("anonymous client connected to a broker with users")
	}
	if _, err := dialMQTT(t, ctx, g.MQTTAddr, "guess", "ops", "dash-pw"); err == nil {
		t.Fatal("a client connected with another user's password")
	}
	dash, err := dialMQTT(t, ctx, g.MQTTAddr, "dash", "dash", "dash-pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dash.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", QoS: 1, Payload: []byte(`{"action":"list"}`)}); err == nil {
		t.Error("viewer published an OTA control request")
	}

	// The operator sees the gateway's retained state (so the gateway's own
	// client is in) and can send a message into the mesh.
	rec := &recorder{ch: make(chan struct{}, 1)}
	ops, err := mqttbridge.Dial(ctx, mqttbridge.ClientConfig{URL: "mqtt://" + g.MQTTAddr, ClientID: "ops-tool", Username: "ops", Password: "ops-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close(context.Background())
	ops.Subscribe(ctx, "mf/#", rec.add)
	if err := ops.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, ctx, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })
	if err := ops.Publish(ctx, "mf/to/broadcast", []byte("hello"), false); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, ctx, "mqtt audit line", func(r logRecord) bool {
		return r.msg == "audit" && r.attrs["via"] == "mqtt" && r.attrs["who"] == "ops" && r.attrs["client"] == "ops-tool" &&
			r.attrs["action"] == "message.send" && r.attrs["target"] == "broadcast" && r.attrs["result"] == "ok"
	})

	// REST: the token is needed for /metrics too; actions are audited.
	get := func(path, token string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.HTTPAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d", code)
	}
	if code := get("/metrics", "t0ken"); code != http.StatusOK {
		t.Errorf("/metrics with the token: %d", code)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+g.HTTPAddr+"/api/v1/ota/nope/pause", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	logs.wait(t, ctx, "rest audit line", func(r logRecord) bool {
		return r.msg == "audit" && r.attrs["via"] == "rest" && r.attrs["who"] == "token" && strings.HasPrefix(r.attrs["remote"], "127.0.0.1:") &&
			r.attrs["action"] == "campaign.pause" && r.attrs["target"] == "campaign nope" && strings.HasPrefix(r.attrs["result"], "404 ")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestGatewayBrokerTLS: with mqtt.embedded.tls the broker's listener
// speaks TLS only, while the gateway's own client keeps publishing over its
// internal loopback listener.
func TestGatewayBrokerTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "broker.crt"), filepath.Join(dir, "broker.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	cfg := testConfig(t)
	cfg.MQTT.Embedded.TLS = BrokerTLS{CertFile: certFile, KeyFile: keyFile}
	cfg.MQTT.Embedded.Users = []BrokerUser{{Name: "dash", PasswordHash: hashOf(t, "dash-pw"), Role: "viewer"}}
	g, _, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: 1, Seed: 3, Speed: 25, Model: "esp32"}, nil)
	waitReady(t, ctx, g, done)

	if _, err := dialMQTT(t, ctx, g.MQTTAddr, "plain", "dash", "dash-pw"); err == nil {
		t.Fatal("a plain-TCP client connected to the TLS listener")
	}
	rec := &recorder{ch: make(chan struct{}, 1)}
	c, err := mqttbridge.Dial(ctx, mqttbridge.ClientConfig{URL: "mqtts://" + g.MQTTAddr, CAFile: certFile, ClientID: "dash", Username: "dash", Password: "dash-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	c.Subscribe(ctx, "mf/#", rec.add)
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, ctx, "mf/status/nodes", nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
