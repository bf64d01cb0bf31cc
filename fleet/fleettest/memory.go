// Package fleettest has an in-memory fleet.Service for testing
// integrations in isolation; the gateway's own tests run the real one.
package fleettest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/protocol"
)

// Memory is a fleet.Service backed by plain fields.
type Memory struct {
	mu        sync.Mutex
	NodeList  []fleet.Node
	Tree      protocol.NodeTree
	Sum       fleet.Summary
	AlertList []fleet.Alert
	ImageList []fleet.Image
	Data      map[string][]byte
	Camps     map[string]*fleet.Campaign
	Sent      []string // "broadcast MSG" or "single ID MSG"
	// Requests are the campaign requests StartCampaign took, in order.
	Requests []fleet.CampaignRequest
	// FirmwareLog is what NodeFirmware answers, by node id.
	FirmwareLog map[uint32][]fleet.FirmwareRecord
	// SendCheck, if set, may refuse a message before it is sent (as the
	// gateway refuses oversize messages and floods).
	SendCheck func(msg string) error
	History   fleet.History // answers the history methods; nil: fleet.ErrHistoryUnavailable
	subs      []chan fleet.Event
	nextID    int
	sentCh    chan struct{} // closed and replaced on every send
	// fault, if set, runs first in every method but Subscribe: set it
	// with SetFault to play a gateway that fails or does not answer.
	fault func(ctx context.Context, method string) error

	// Rollouts are the rollouts StartRollout took, by id (rollout.go).
	Rollouts map[string]*fleet.Rollout
}

// SetFault makes every method but Subscribe call f first, with the
// method's ctx and name, and return f's error if there is one (nil f:
// no fault). See Fail and Hang.
func (m *Memory) SetFault(f func(ctx context.Context, method string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
}

// Fail is a fault that fails every method with err.
func Fail(err error) func(context.Context, string) error {
	return func(context.Context, string) error { return err }
}

// Hang is a fault that answers no method: each waits until its ctx ends
// and then fails as the gateway does, with fleet.ErrUnavailable.
func Hang(ctx context.Context, method string) error {
	<-ctx.Done()
	return fmt.Errorf("%s: %w: %w", method, fleet.ErrUnavailable, ctx.Err())
}

// check runs the fault, if any, outside m.mu so a hanging one blocks
// only its caller.
func (m *Memory) check(ctx context.Context, method string) error {
	m.mu.Lock()
	f := m.fault
	m.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(ctx, method)
}

// SetAlerts replaces the alert list (safe while integrations read it).
func (m *Memory) SetAlerts(as []fleet.Alert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.AlertList = as
}

// WaitSent waits until at least n messages were sent into the mesh, or
// ctx ends, and returns what was sent.
func (m *Memory) WaitSent(ctx context.Context, n int) ([]string, error) {
	for {
		m.mu.Lock()
		if len(m.Sent) >= n {
			out := append([]string(nil), m.Sent...)
			m.mu.Unlock()
			return out, nil
		}
		ch := m.sentSignal()
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return m.SentMessages(), ctx.Err()
		}
	}
}

// sentSignal is the channel closed at the next send; m.mu must be held.
func (m *Memory) sentSignal() chan struct{} {
	if m.sentCh == nil {
		m.sentCh = make(chan struct{})
	}
	return m.sentCh
}

// noteSent records a send; m.mu must be held.
func (m *Memory) noteSent(s string) {
	m.Sent = append(m.Sent, s)
	if m.sentCh != nil {
		close(m.sentCh)
		m.sentCh = nil
	}
}

var _ fleet.Service = (*Memory)(nil)

// Nodes implements fleet.Service.
func (m *Memory) Nodes(ctx context.Context) ([]fleet.Node, error) {
	if err := m.check(ctx, "Nodes"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]fleet.Node(nil), m.NodeList...), nil
}

// Node implements fleet.Service.
func (m *Memory) Node(ctx context.Context, id uint32) (fleet.Node, error) {
	if err := m.check(ctx, "Node"); err != nil {
		return fleet.Node{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.NodeList {
		if n.ID == id {
			return n, nil
		}
	}
	return fleet.Node{}, fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
}

// Topology implements fleet.Service.
func (m *Memory) Topology(ctx context.Context) (protocol.NodeTree, error) {
	if err := m.check(ctx, "Topology"); err != nil {
		return protocol.NodeTree{}, err
	}
	return m.Tree, nil
}

// Summary implements fleet.Service.
func (m *Memory) Summary(ctx context.Context) (fleet.Summary, error) {
	if err := m.check(ctx, "Summary"); err != nil {
		return fleet.Summary{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Sum, nil
}

// Update changes m's fields while integrations may be reading them.
func (m *Memory) Update(fn func(m *Memory)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m)
}

// Alerts implements fleet.Service.
func (m *Memory) Alerts(ctx context.Context, includeCleared bool) ([]fleet.Alert, error) {
	if err := m.check(ctx, "Alerts"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []fleet.Alert
	for _, a := range m.AlertList {
		if includeCleared || a.Cleared == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// Images implements fleet.Service.
func (m *Memory) Images(ctx context.Context) ([]fleet.Image, error) {
	if err := m.check(ctx, "Images"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]fleet.Image(nil), m.ImageList...), nil
}

// AddImage implements fleet.Service. Like the gateway, it refuses other
// bytes under a stored version; unlike it, it keeps images in memory.
func (m *Memory) AddImage(ctx context.Context, up fleet.ImageUpload, r io.Reader) (fleet.Image, bool, error) {
	if err := m.check(ctx, "AddImage"); err != nil {
		return fleet.Image{}, false, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fleet.Image{}, false, fmt.Errorf("reading image: %w", err)
	}
	if len(data) == 0 {
		return fleet.Image{}, false, fmt.Errorf("empty image: %w", fleet.ErrInvalid)
	}
	h := md5.Sum(data)
	got := hex.EncodeToString(h[:])
	if up.MD5 != "" && up.MD5 != got {
		return fleet.Image{}, false, fmt.Errorf("md5 mismatch: got %s, want %s: %w", got, up.MD5, fleet.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, img := range m.ImageList {
		if img.Role != up.Role || img.Hardware != up.Hardware || (img.Version != up.Version && img.MD5 != got) {
			continue
		}
		if img.Version == up.Version && img.MD5 == got {
			return img, true, nil
		}
		return fleet.Image{}, false, fmt.Errorf("version %s is image %s (md5 %s): %w", img.Version, img.ID, img.MD5, fleet.ErrConflict)
	}
	img := fleet.Image{ID: got[:12], Role: up.Role, Hardware: up.Hardware, Version: up.Version, MD5: got, Size: int64(len(data))}
	m.ImageList = append(m.ImageList, img)
	if m.Data == nil {
		m.Data = map[string][]byte{}
	}
	m.Data[img.ID] = data
	return img, false, nil
}

// RemoveImage implements fleet.Service.
func (m *Memory) RemoveImage(ctx context.Context, id string) error {
	if err := m.check(ctx, "RemoveImage"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, img := range m.ImageList {
		if img.ID == id {
			m.ImageList = append(m.ImageList[:i], m.ImageList[i+1:]...)
			delete(m.Data, id)
			return nil
		}
	}
	return fmt.Errorf("image %q: %w", id, fleet.ErrNotFound)
}

// StartCampaign implements fleet.Service.
func (m *Memory) StartCampaign(ctx context.Context, req fleet.CampaignRequest) (fleet.Campaign, error) {
	if err := m.check(ctx, "StartCampaign"); err != nil {
		return fleet.Campaign{}, err
	}
	m.mu.Lock()
	var img *fleet.Image
	for i := range m.ImageList {
		if m.ImageList[i].ID == req.Image || m.ImageList[i].MD5 == req.Image {
			img = &m.ImageList[i]
		}
	}
	if img == nil {
		m.mu.Unlock()
		return fleet.Campaign{}, fmt.Errorf("image %q: %w", req.Image, fleet.ErrNotFound)
	}
	m.Requests = append(m.Requests, req)
	m.nextID++
	c := &fleet.Campaign{ID: "c" + strconv.Itoa(m.nextID), Image: *img, Mode: req.Mode, Compress: req.Compress,
		State: "running", Started: time.Unix(0, 0).UTC(), Nodes: map[string]fleet.Progress{}, Targets: req.Nodes}
	if m.Camps == nil {
		m.Camps = map[string]*fleet.Campaign{}
	}
	m.Camps[c.ID] = c
	out := *c
	m.mu.Unlock()
	m.Publish(fleet.Event{Campaign: &out})
	return out, nil
}

// Campaigns implements fleet.Service.
func (m *Memory) Campaigns(ctx context.Context) ([]fleet.Campaign, error) {
	if err := m.check(ctx, "Campaigns"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []fleet.Campaign
	for _, c := range m.Camps {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Campaign implements fleet.Service.
func (m *Memory) Campaign(ctx context.Context, id string) (fleet.Campaign, error) {
	if err := m.check(ctx, "Campaign"); err != nil {
		return fleet.Campaign{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.Camps[id]
	if !ok {
		return fleet.Campaign{}, fmt.Errorf("campaign %q: %w", id, fleet.ErrNotFound)
	}
	return *c, nil
}

func (m *Memory) setState(ctx context.Context, method, id, from, to string) (fleet.Campaign, error) {
	if err := m.check(ctx, method); err != nil {
		return fleet.Campaign{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.Camps[id]
	if !ok {
		return fleet.Campaign{}, fmt.Errorf("campaign %q: %w", id, fleet.ErrNotFound)
	}
	if from != "" && c.State != from {
		return *c, fmt.Errorf("campaign %q is %s: %w", id, c.State, fleet.ErrConflict)
	}
	c.State = to
	return *c, nil
}

// PauseCampaign implements fleet.Service.
func (m *Memory) PauseCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return m.setState(ctx, "PauseCampaign", id, "running", "paused")
}

// ResumeCampaign implements fleet.Service.
func (m *Memory) ResumeCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return m.setState(ctx, "ResumeCampaign", id, "paused", "running")
}

// AbortCampaign implements fleet.Service.
func (m *Memory) AbortCampaign(ctx context.Context, id string) (fleet.Campaign, error) {
	return m.setState(ctx, "AbortCampaign", id, "", "aborted")
}

// SendBroadcast implements fleet.Service.
func (m *Memory) SendBroadcast(ctx context.Context, msg string) error {
	if err := m.check(ctx, "SendBroadcast"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.SendCheck != nil {
		if err := m.SendCheck(msg); err != nil {
			return err
		}
	}
	m.noteSent("broadcast " + msg)
	return nil
}

// SendSingle implements fleet.Service.
func (m *Memory) SendSingle(ctx context.Context, dest uint32, msg string) error {
	if err := m.check(ctx, "SendSingle"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.SendCheck != nil {
		if err := m.SendCheck(msg); err != nil {
			return err
		}
	}
	m.noteSent(fmt.Sprintf("single %d %s", dest, msg))
	return nil
}

// Subscribe implements fleet.Service.
func (m *Memory) Subscribe(ctx context.Context) <-chan fleet.Event {
	ch := make(chan fleet.Event, 64)
	m.mu.Lock()
	m.subs = append(m.subs, ch)
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, c := range m.subs {
			if c == ch {
				m.subs = append(m.subs[:i], m.subs[i+1:]...)
				close(ch)
				break
			}
		}
	}()
	return ch
}

// Publish delivers ev to every subscriber.
func (m *Memory) Publish(ev fleet.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

// SentMessages returns what was sent into the mesh so far.
func (m *Memory) SentMessages() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.Sent...)
}
