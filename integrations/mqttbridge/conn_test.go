package mqttbridge

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startMosquitto runs a real Mosquitto broker on a free loopback port, or
// skips when the binary is not installed (.ci/run installs it).
func startMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := exec.LookPath(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("mosquitto not installed")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := t.TempDir() + "/mosquitto.conf"
	if err := writeFile(conf, fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\n", port)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not start on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that is coming up; not synchronisation of our own code
	}
}

func roundTrip(t *testing.T, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := Dial(ctx, ClientConfig{URL: url, ClientID: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(context.Background())
	got := make(chan Message, 4)
	handler := func(m Message) { got <- m }
	if err := sub.Subscribe(ctx, "test/+/x", handler); err != nil {
		t.Fatal(err)
	}
	if err := sub.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	// Connected, Subscribe returns once the broker acknowledged the
	// subscription (the one made on connection runs in the background).
	if err := sub.Subscribe(ctx, "test/+/x", handler); err != nil {
		t.Fatal(err)
	}
	pub, err := Dial(ctx, ClientConfig{URL: url, ClientID: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	if err := pub.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "test/a/x", []byte("hello"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic != "test/a/x" || string(m.Payload) != "hello" {
			t.Fatalf("got %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("no message received")
	}
}

func TestEmbeddedBrokerRoundTrip(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	roundTrip(t, b.URL())
}

func TestMosquittoRoundTrip(t *testing.T) {
	roundTrip(t, "tcp://"+startMosquitto(t))
}

func TestClientSurvivesBrokerLoss(t *testing.T) {
	addr := freeAddr(t)
	b, err := StartBroker(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ups, downs := make(chan struct{}, 4), make(chan struct{}, 4)
	c, err := Dial(ctx, ClientConfig{URL: "mqtt://" + addr, ClientID: "survivor",
		OnUp: func() { ups <- struct{}{} }, OnDown: func() { downs <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	<-ups
	b.Close()
	// While the broker is gone, publishing fails fast instead of blocking.
	select {
	case <-downs:
	case <-ctx.Done():
		t.Fatal("client never noticed the broker loss")
	}
	if err := c.Publish(ctx, "x", []byte("y"), false); err != ErrNotConnected {
		t.Fatalf("publish while down: %v", err)
	}
	b2, err := StartBroker(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	select {
	case <-ups:
	case <-ctx.Done():
		t.Fatal("client did not reconnect")
	}
	roundTrip(t, b2.URL())
}

func TestTopicMatches(t *testing.T) {
	for _, c := range []struct {
		f, t string
		want bool
	}{
		{"a/b", "a/b", true}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false}, {"a/#", "a/b/c", true},
		{"#", "a", true}, {"a/b", "a", false}, {"a/+/c", "a/x/c", true}, {"a/+/c", "a/x/d", false},
	} {
		if got := TopicMatches(c.f, c.t); got != c.want {
			t.Errorf("TopicMatches(%q,%q)=%v", c.f, c.t, got)
		}
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

// Once AwaitConnection returns, the client publishes: a caller that
// awaits the connection and then publishes its state must not find it
// "not connected" (TestRefusedMeshMessages and TestMosquittoRoundTrip
// flaked so).
func TestAwaitConnectionMeansConnected(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 100 {
		c, err := Dial(ctx, ClientConfig{URL: b.URL(), ClientID: fmt.Sprint("c", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AwaitConnection(ctx); err != nil {
			t.Fatal(err)
		}
		err = c.Publish(ctx, "test/up", []byte("1"), false)
		c.Close(context.Background())
		if err != nil {
			t.Fatalf("connection %d: publish after AwaitConnection: %v", i, err)
		}
	}
}
