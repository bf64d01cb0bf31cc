package gateway

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
)

// stuckDriver is a node loop that takes no call: Do waits for its ctx, or
// fails at once with stopped when that is set; it notes the deadline of
// the last call.
type stuckDriver struct {
	stopped  error
	deadline chan time.Time
}

func (d *stuckDriver) Do(ctx context.Context, _ func(time.Time, *mesh.Node)) error {
	dl, _ := ctx.Deadline()
	select {
	case d.deadline <- dl:
	default:
	}
	if d.stopped != nil {
		return d.stopped
	}
	<-ctx.Done()
	return ctx.Err()
}
func (d *stuckDriver) Events() <-chan mesh.Event     { return nil }
func (d *stuckDriver) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// stuckGateway is a gateway (with one stored image) whose node loop does
// not answer.
func stuckGateway(t *testing.T, d *stuckDriver) (*Gateway, fleet.Image) {
	t.Helper()
	g, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := g.AddImage(t.Context(), fleet.ImageUpload{Role: "sensor", Hardware: "ESP32", Version: "1.0.0"}, bytes.NewReader(compress.FirmwareLike(4<<10, 1)))
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.driver = d
	g.mu.Unlock()
	return g, img
}

// Every fleet.Service method that needs the node loop fails with
// fleet.ErrUnavailable, naming why, when the loop does not answer before
// the caller's ctx ends or has stopped: no empty node list, summary,
// topology or campaign list stands in for the answer.
func TestServiceUnavailableWhenLoopDoesNotAnswer(t *testing.T) {
	errStopped := errors.New("tcp driver stopped")
	for _, c := range []struct {
		name   string
		driver *stuckDriver
		cause  error
	}{
		{"busy", &stuckDriver{}, context.DeadlineExceeded},
		{"stopped", &stuckDriver{stopped: errStopped}, errStopped},
	} {
		g, img := stuckGateway(t, c.driver)
		calls := map[string]func(ctx context.Context) error{
			"Nodes":          func(ctx context.Context) error { _, err := g.Nodes(ctx); return err },
			"Node":           func(ctx context.Context) error { _, err := g.Node(ctx, 1); return err },
			"Topology":       func(ctx context.Context) error { _, err := g.Topology(ctx); return err },
			"Summary":        func(ctx context.Context) error { _, err := g.Summary(ctx); return err },
			"Alerts":         func(ctx context.Context) error { _, err := g.Alerts(ctx, true); return err },
			"Campaigns":      func(ctx context.Context) error { _, err := g.Campaigns(ctx); return err },
			"Campaign":       func(ctx context.Context) error { _, err := g.Campaign(ctx, "c1"); return err },
			"PauseCampaign":  func(ctx context.Context) error { _, err := g.PauseCampaign(ctx, "c1"); return err },
			"ResumeCampaign": func(ctx context.Context) error { _, err := g.ResumeCampaign(ctx, "c1"); return err },
			"AbortCampaign":  func(ctx context.Context) error { _, err := g.AbortCampaign(ctx, "c1"); return err },
			"StartCampaign": func(ctx context.Context) error {
				_, err := g.StartCampaign(ctx, fleet.CampaignRequest{Image: img.ID})
				return err
			},
			// Without the running campaigns, the image may be in use.
			"RemoveImage":   func(ctx context.Context) error { return g.RemoveImage(ctx, img.ID) },
			"SendBroadcast": func(ctx context.Context) error { return g.SendBroadcast(ctx, "hi") },
		}
		for name, call := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err := call(ctx)
			cancel()
			if !errors.Is(err, fleet.ErrUnavailable) || !errors.Is(err, c.cause) || !strings.Contains(err.Error(), "gateway node loop busy or stopped") {
				t.Errorf("loop %s: %s: err = %v, want fleet.ErrUnavailable and %v", c.name, name, err, c.cause)
			}
		}
		if imgs, err := g.Images(t.Context()); err != nil || len(imgs) != 1 {
			t.Errorf("loop %s: images %v (%v): the image was removed", c.name, imgs, err)
		}
	}
}

// The caller's ctx bounds the wait; a caller without a deadline gets the
// gateway's own bound, loopWaitCap, not an endless wait.
func TestServiceWaitIsBounded(t *testing.T) {
	d := &stuckDriver{stopped: errors.New("stopped"), deadline: make(chan time.Time, 1)}
	g, _ := stuckGateway(t, d)
	start := time.Now()
	g.Nodes(context.Background())
	if dl := <-d.deadline; dl.IsZero() || dl.Sub(start) > loopWaitCap+time.Second {
		t.Errorf("no deadline of its own: the loop was asked with deadline %v, want about %v from now", dl, loopWaitCap)
	}
	mine := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), mine)
	defer cancel()
	g.Nodes(ctx)
	if dl := <-d.deadline; !dl.Equal(mine) {
		t.Errorf("caller's deadline %v: the loop was asked with deadline %v", mine, dl)
	}
}
