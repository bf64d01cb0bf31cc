package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

// mosquitto is a real Mosquitto broker run by a test, on a fixed loopback
// port so that it can be killed and started again where clients expect it.
type mosquitto struct {
	t    *testing.T
	bin  string
	conf string
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the running process has been reaped
	logs   *strings.Builder
	logMu  *sync.Mutex
}

// startMosquitto runs Mosquitto on a free loopback port, or skips the test
// when it is not installed (.ci/run installs it). It is killed when the
// test ends.
func startMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := exec.LookPath(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Skip("mosquitto not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	m := &mosquitto{t: t, bin: bin, addr: addr, conf: filepath.Join(t.TempDir(), "mosquitto.conf")}
	// No persistence: a restarted broker has no retained messages, so what
	// a client sees after a restart was published again.
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n", port)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log())
		}
	})
	m.start()
	return m
}

// log is what the broker logged since it was last started.
func (m *mosquitto) log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.logs == nil {
		return ""
	}
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.logs.String()
}

// URL is the broker's client URL.
func (m *mosquitto) URL() string { return "mqtt://" + m.addr }

// start runs the broker and returns once it reports that it is running
// (its own log line, after the listener is open).
func (m *mosquitto) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "-c", m.conf)
	// Its log goes to stderr, which it does not buffer.
	out, err := cmd.StderrPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	running := make(chan struct{})
	logs := &strings.Builder{}
	logMu := &sync.Mutex{}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), " running") {
				once.Do(func() { close(running) })
			}
		}
	}()
	exited := make(chan struct{})
	go func() {
		<-scanned // Wait must not run before the pipe is read to the end
		cmd.Wait()
		close(exited)
	}()
	m.mu.Lock()
	m.cmd, m.exited, m.logs, m.logMu = cmd, exited, logs, logMu
	m.mu.Unlock()
	select {
	case <-running:
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		m.t.Fatalf("mosquitto exited on start:\n%s", logs)
	case <-time.After(10 * time.Second):
		m.t.Fatal("mosquitto did not report running within 10s")
	}
}

// kill ends the broker abruptly (SIGKILL: no clean goodbye to its clients)
// and waits until the process is gone.
func (m *mosquitto) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// tcpProxy forwards connections to a target and can cut them all at once,
// as a network failure would: the two ends see their sockets close with no
// MQTT DISCONNECT in between.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.sever()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) URL() string { return "mqtt://" + p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Add(2)
		go pipe(up, down)
		go pipe(down, up)
	}
}

// sever closes every forwarded connection; it returns how many sockets it closed.
func (p *tcpProxy) sever() int {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	return len(cs)
}

// TestGatewayEndToEndMosquitto is TestGatewayEndToEnd against a real
// Mosquitto broker configured as mqtt.url.
func TestGatewayEndToEndMosquitto(t *testing.T) {
	m := startMosquitto(t)
	runEndToEnd(t, func(_ *testing.T, cfg *Config) { cfg.MQTT.URL = m.URL() })
}

// lastDevice is the id of the last device of a simulated mesh. It is a
// leaf: RandomTree attaches every node below one added before it, so
// crashing it takes no other node offline.
func lastDevice(cfg Config, devices int) uint32 { return cfg.Node.ID + 1000 + uint32(devices-1) }

func crashDevice(t *testing.T, ctx context.Context, sm *scenario.Live, id uint32) {
	t.Helper()
	err := sm.Realtime.Do(ctx, func(n *sim.Network) {
		nd := n.Node(id)
		if nd == nil {
			t.Errorf("no simulated node %d", id)
			return
		}
		n.Crash(nd)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// offlineAlert finds the active node_offline alert of node in an
// <prefix>/status/alerts payload.
func offlineAlert(payload []byte, node uint32) (fleet.Alert, bool) {
	var p mqttbridge.AlertsPayload
	if json.Unmarshal(payload, &p) != nil {
		return fleet.Alert{}, false
	}
	for _, a := range p.Alerts {
		if a.NodeID == node && a.Type == "node_offline" && a.State != "cleared" {
			return a, true
		}
	}
	return fleet.Alert{}, false
}

func hasOfflineAlert(node uint32) func([]byte) bool {
	return func(p []byte) bool { _, ok := offlineAlert(p, node); return ok }
}

// restAlert is node's active node_offline alert as REST reports it.
func restAlert(t *testing.T, g *Gateway, node uint32) (fleet.Alert, bool) {
	t.Helper()
	var as []fleet.Alert
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/alerts", &as)
	for _, a := range as {
		if a.NodeID == node && a.Type == "node_offline" {
			return a, true
		}
	}
	return fleet.Alert{}, false
}

// stillRunning fails the test if the gateway's Run has returned.
func stillRunning(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	default:
	}
}

// TestGatewaySurvivesBrokerLoss kills the external broker under a running
// gateway that has an active alert, and starts it again on the same port:
// the gateway keeps serving REST while the broker is gone, reconnects, and
// publishes its retained state again, the alert unchanged.
func TestGatewaySurvivesBrokerLoss(t *testing.T) {
	m := startMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.URL = m.URL()
	const devices = 4
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	waitReady(t, ctx, g, done)
	rec, _ := observe(t, ctx, m.URL(), "observer")
	rec.waitFor(t, ctx, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })
	rec.waitFor(t, ctx, "mf/status/nodes", func(p []byte) bool {
		var n mqttbridge.NodesPayload
		json.Unmarshal(p, &n)
		return n.NodeCount == devices+1
	})

	// A device dies: the gateway raises node_offline.
	victim := lastDevice(cfg, devices)
	crashDevice(t, ctx, sm, victim)
	before, _ := offlineAlert(rec.waitFor(t, ctx, "mf/status/alerts", hasOfflineAlert(victim)), victim)
	if a, ok := restAlert(t, g, victim); !ok || !a.Raised.Equal(before.Raised) {
		t.Fatalf("REST alert %+v (found %v), MQTT says raised at %v", a, ok, before.Raised)
	}

	// The broker dies.
	m.kill()
	// Bounded poll: the broker's death reaches the gateway's client through
	// its socket, outside anything this test can wait on.
	for g.MQTTConnected() {
		select {
		case <-ctx.Done():
			t.Fatal("the gateway never noticed the broker was gone")
		case <-time.After(10 * time.Millisecond):
		}
	}
	stillRunning(t, done)
	if a, ok := restAlert(t, g, victim); !ok || !a.Raised.Equal(before.Raised) {
		t.Fatalf("without a broker REST has alert %+v (found %v), want raised at %v", a, ok, before.Raised)
	}
	var sum fleet.Summary
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/summary", &sum)
	if sum.ActiveAlerts < 1 || sum.GatewayID != cfg.Node.ID {
		t.Fatalf("without a broker the summary is %+v", sum)
	}
	var victimNode fleet.Node
	getJSON(t, fmt.Sprintf("http://%s/api/v1/nodes/%d", g.HTTPAddr, victim), &victimNode)
	if victimNode.Status != "offline" {
		t.Fatalf("without a broker REST has the crashed node as %+v", victimNode)
	}
	resp, err := http.Get("http://" + g.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics without a broker: %d", resp.StatusCode)
	}

	// The broker comes back, empty: whatever arrives now the gateway sent
	// again after reconnecting.
	mark := rec.mark()
	m.start()
	rec.waitSince(t, ctx, mark, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })
	after, _ := offlineAlert(func() []byte {
		p, _ := rec.waitSince(t, ctx, mark, "mf/status/alerts", hasOfflineAlert(victim))
		return p
	}(), victim)
	if !after.Raised.Equal(before.Raised) || after.ID != before.ID {
		t.Fatalf("after the broker came back the alert is %+v, before it was %+v", after, before)
	}
	stillRunning(t, done)
	if !g.MQTTConnected() {
		t.Fatal("gateway published but does not report itself connected")
	}

	// What it sent is retained: a client arriving now gets it at once.
	late, _ := observe(t, ctx, m.URL(), "late")
	late.waitFor(t, ctx, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })
	if a, _ := offlineAlert(late.waitFor(t, ctx, "mf/status/alerts", hasOfflineAlert(victim)), victim); !a.Raised.Equal(before.Raised) {
		t.Fatalf("retained alert %+v, want raised at %v", a, before.Raised)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestGatewayLastWill cuts the gateway's connection to Mosquitto without
// an MQTT goodbye: the broker publishes the gateway's last will ("offline"
// on <prefix>/bridge/state), the gateway reconnects and says "online"
// again, and a clean shutdown leaves "offline" behind.
func TestGatewayLastWill(t *testing.T) {
	m := startMosquitto(t)
	proxy := startProxy(t, m.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.URL = proxy.URL()
	g, _, done := startSimGateway(t, ctx, cfg, 1)
	waitReady(t, ctx, g, done)
	// The observer talks to the broker directly, not through the proxy.
	rec, _ := observe(t, ctx, m.URL(), "observer")
	rec.waitFor(t, ctx, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })

	mark := rec.mark()
	if n := proxy.sever(); n == 0 {
		t.Fatal("the gateway had no connection through the proxy")
	}
	_, at := rec.waitSince(t, ctx, mark, "mf/bridge/state", func(p []byte) bool { return string(p) == "offline" })
	rec.waitSince(t, ctx, at+1, "mf/bridge/state", func(p []byte) bool { return string(p) == "online" })
	stillRunning(t, done)

	mark = rec.mark()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	rec.waitSince(t, wctx, mark, "mf/bridge/state", func(p []byte) bool { return string(p) == "offline" })
}
