package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
)

// BrokerUser is one account of the embedded broker: a role, explicit topic
// filters, or both (the filters add to the role's).
type BrokerUser struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"` // bcrypt, from `meshfleet gateway hash-password`
	Role         string   `yaml:"role"`          // admin | operator | viewer
	Read         []string `yaml:"read"`          // topic filters the user may subscribe to
	Write        []string `yaml:"write"`         // topic filters the user may publish to
}

// BrokerTLS serves the embedded broker's listener over TLS.
type BrokerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"` // set: clients need a certificate signed by this CA
}

// MQTTUploads bounds firmware uploads over MQTT.
type MQTTUploads struct {
	PerClient   int      `yaml:"per_client"`   // open uploads per user (or client id when anonymous)
	IdleTimeout Duration `yaml:"idle_timeout"` // an upload without a chunk for this long is dropped
}

// isLoopback reports whether a listen address can only be reached from this
// machine. An empty host (":8080") listens on every interface.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MetricsNeedToken reports whether /metrics asks for http.token:
// http.metrics_auth when set, else whenever HTTP listens beyond loopback
// with a token.
func (h HTTPConfig) MetricsNeedToken() bool {
	if h.MetricsAuth != nil {
		return *h.MetricsAuth
	}
	return h.Token != "" && !isLoopback(h.Listen)
}

// validateSecurity refuses to serve anything beyond loopback without
// credentials, unless the operator says insecure for that interface.
func (c Config) validateSecurity() error {
	bad := func(key, format string, a ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...))
	}
	h := c.HTTP
	if h.Listen != "" && h.Token == "" && !h.Insecure && !isLoopback(h.Listen) {
		return bad("http.token", "http.listen %q is reachable beyond this machine and http.token is empty: set http.token "+
			"(e.g. the output of `openssl rand -hex 32`), listen on 127.0.0.1, or set http.insecure: true to serve the API without credentials", h.Listen)
	}
	if h.MetricsAuth != nil && *h.MetricsAuth && h.Token == "" {
		return bad("http.metrics_auth", "is true but http.token is empty: set http.token (Prometheus sends it as a bearer token)")
	}
	if !c.MQTT.Enabled {
		return nil
	}
	if c.MQTT.Uploads.PerClient < 1 {
		return bad("mqtt.uploads.per_client", "must be at least 1, got %d", c.MQTT.Uploads.PerClient)
	}
	if c.MQTT.Uploads.IdleTimeout.D() < time.Second {
		return bad("mqtt.uploads.idle_timeout", "must be at least 1s, got %s", c.MQTT.Uploads.IdleTimeout.D())
	}
	if c.MQTT.URL != "" {
		return nil
	}
	e := c.MQTT.Embedded
	if len(e.Users) == 0 && !e.Insecure && !isLoopback(e.Listen) {
		return bad("mqtt.embedded.users", "mqtt.embedded.listen %q is reachable beyond this machine and no users are configured: "+
			"add users with password hashes (`meshfleet gateway hash-password`), listen on 127.0.0.1, "+
			"or set mqtt.embedded.insecure: true to accept anonymous clients", e.Listen)
	}
	if _, err := c.brokerUsers(); err != nil {
		return err
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		return bad("mqtt.embedded.tls.cert_file", "cert_file and key_file go together")
	}
	if e.TLS.ClientCAFile != "" && e.TLS.CertFile == "" {
		return bad("mqtt.embedded.tls.client_ca_file", "needs cert_file and key_file (the broker's own certificate)")
	}
	return nil
}

// brokerUsers turns the configured users into the broker's, roles
// expanded under the topic prefix.
func (c Config) brokerUsers() ([]mqttbridge.User, error) {
	var out []mqttbridge.User
	for i, u := range c.MQTT.Embedded.Users {
		key := fmt.Sprintf("mqtt.embedded.users[%d]", i)
		bu := mqttbridge.User{Name: u.Name, PasswordHash: u.PasswordHash}
		if u.Role != "" {
			r, w, err := mqttbridge.RoleFilters(u.Role, c.TopicRoot())
			if err != nil {
				return nil, fmt.Errorf("config: %s.role: %v", key, err)
			}
			bu.Read, bu.Write = r, w
			if u.Role == "operator" {
				// Campaigns for several meshes at once (mesh.go).
				shared := mqttbridge.SharedResponseTopic(c.MQTT.Prefix)
				bu.Read = append(bu.Read, shared, shared+"/#")
				bu.Write = append(bu.Write, mqttbridge.SharedControlTopic(c.MQTT.Prefix))
			}
		} else if len(u.Read) == 0 && len(u.Write) == 0 {
			return nil, fmt.Errorf("config: %s: give a role (%s) or read/write topic filters", key, strings.Join(mqttbridge.Roles, ", "))
		}
		bu.Read = append(bu.Read, u.Read...)
		bu.Write = append(bu.Write, u.Write...)
		out = append(out, bu)
	}
	if err := mqttbridge.CheckUsers(out); err != nil {
		return nil, fmt.Errorf("config: mqtt.embedded.%v", err)
	}
	return out, nil
}

// brokerConfig is the embedded broker as configured, with fresh random
// credentials for the gateway's own client.
func (c Config) brokerConfig() (mqttbridge.BrokerConfig, error) {
	users, err := c.brokerUsers()
	if err != nil {
		return mqttbridge.BrokerConfig{}, err
	}
	e := c.MQTT.Embedded
	return mqttbridge.BrokerConfig{
		Listen: e.Listen,
		TLS:    mqttbridge.BrokerTLS{CertFile: e.TLS.CertFile, KeyFile: e.TLS.KeyFile, ClientCAFile: e.TLS.ClientCAFile},
		Users:  users,
		Prefix: c.TopicRoot(),
		Gateway: &mqttbridge.Credentials{
			Username: "meshfleet-gateway-" + randomHex(4),
			Password: randomHex(32),
		},
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
