package gateway

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/meshfleet/meshfleet/fleet"
)

// fanout delivers fleet events to every subscriber without letting a slow
// one stall the gateway: a full subscriber loses its oldest event (counted).
type fanout struct {
	mu      sync.Mutex
	subs    map[chan fleet.Event]struct{}
	dropped atomic.Uint64
}

const subscriberBuffer = 256

func newFanout() *fanout { return &fanout{subs: map[chan fleet.Event]struct{}{}} }

func (f *fanout) subscribe(ctx context.Context) <-chan fleet.Event {
	ch := make(chan fleet.Event, subscriberBuffer)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch
}

func (f *fanout) publish(ev fleet.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		for {
			select {
			case ch <- ev:
			default:
				// Full: drop the oldest and try again.
				select {
				case <-ch:
					f.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
}
