package mqttbridge

import (
	"net"
	"sync"
	"testing"
)

// Clients that connect while the broker closes (an MQTT client reconnects
// at once when the broker drops it) must neither race with nor hang Close.
func TestBrokerCloseWhileClientsConnect(t *testing.T) {
	for range 50 {
		b, err := StartBroker("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", b.Addr())
					if err != nil {
						continue // refused once the listener is closed
					}
					c.Close()
				}
			})
		}
		b.Close()
		close(stop)
		wg.Wait()
	}
}
