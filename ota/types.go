package ota

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// Mode is how a transfer reaches the receivers.
type Mode string

// Distribution modes.
const (
	// ModeStock is the stock protocol (docs/protocol.md §8): Announce, one
	// DataRequest outstanding per receiver, base64 Data.
	ModeStock Mode = "stock"
	// ModePipelined is unicast with a window of outstanding chunk
	// requests per receiver (Go receivers).
	ModePipelined Mode = "pipelined"
	// ModeBroadcast pushes every chunk once over the whole mesh and
	// repairs gaps hop by hop (Go receivers).
	ModeBroadcast Mode = "broadcast"
	// ModeStockTurbo serves stock receivers with one flood per chunk
	// instead of one stream per receiver, with stock packages only
	// (distributor_turbo.go).
	ModeStockTurbo Mode = "stock-turbo"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeStock, ModePipelined, ModeBroadcast, ModeStockTurbo:
		return Mode(s), nil
	}
	return "", fmt.Errorf("ota: unknown mode %q (want stock, stock-turbo, pipelined or broadcast)", s)
}

// State is a receiver's OTA state.
type State string

// Receiver states, as reported in events and Report packages.
const (
	StateIdle        State = "idle"
	StateDownloading State = "downloading"
	StateVerifying   State = "verifying"
	StateSwitching   State = "switching"
	StateConfirmed   State = "confirmed"
	StateFailed      State = "failed"
	StateRolledBack  State = "rolled_back"
	// StateRefused: the node will not install the offered image (its
	// signed manifest names another role or hardware, a lower security
	// counter, or is missing). Final for that image: the node refuses
	// every later offer of it. A failed verification is StateFailed,
	// which is retried.
	StateRefused State = "refused"
	// StateInstalled: a stock receiver, which never reports, was served
	// its last chunk and then stopped asking (or left the mesh and came
	// back, its reboot): it installed the image as far as the distributor
	// can tell. Only the distributor uses it, always with Estimated set.
	StateInstalled State = "installed"
	// StateLost: a target sent no news for DistributorConfig.LostAfter
	// (campaign_lost.go), or a stock receiver stopped asking in the
	// middle of its download (it left the mesh, or ran out of retries);
	// Err says which. Only the distributor uses it. It counts as an
	// outcome, so the campaign can end; the node takes part again with
	// its next report or request, and its own outcome replaces lost even
	// after the campaign ended.
	StateLost State = "lost"
)

// Progress is a receiver's progress event (emitted through mesh.Host.Emit
// on every state change and at most once per ProgressInterval while
// downloading).
type Progress struct {
	mesh.EventBase
	Node     uint32
	Transfer string // transfer id ("" for a stock announce: the md5)
	MD5      string // image being installed
	State    State
	Mode     Mode
	Done     int     // chunks held
	Total    int     // chunks in the transfer
	Bytes    int64   // transfer bytes held
	Rate     float64 // transfer bytes/s over the download so far
	ETA      time.Duration
	Err      string
	// Estimated: the figures are the distributor's inference from a stock
	// receiver's requests, not the node's own word.
	Estimated bool
}

// CampaignEvent reports a campaign's state change or a node's progress as
// seen by the distributor.
type CampaignEvent struct {
	mesh.EventBase
	Campaign string
	State    CampaignState
	Node     uint32 // 0 for campaign-level changes
	Progress NodeProgress
}

// Radio is the airtime model a plugin paces its own sends with: one
// message costs Overhead plus len × ByteTime of the node's shared radio.
// The defaults are the ESP8266 figures (DESIGN.md: ~2.1 ms + 7.6 µs/byte).
type Radio struct {
	Overhead time.Duration
	ByteTime time.Duration
}

// DefaultRadio is the ESP8266 painlessMesh one-hop cost.
var DefaultRadio = Radio{Overhead: 2100 * time.Microsecond, ByteTime: 7600 * time.Nanosecond}

func (r Radio) airtime(bytes int) time.Duration {
	return r.Overhead + time.Duration(bytes)*r.ByteTime
}

// pacer releases messages no faster than the node's radio can send them,
// so a burst of answers waits in the plugin instead of overflowing the
// radio queue (an ESP drops what does not fit its heap).
type pacer struct {
	radio Radio
	free  time.Time // when the radio is estimated to be idle
	slack time.Duration
}

// busy accounts for bytes sent count times (a forwarded broadcast leaves
// once per child) that the plugin did not send itself.
func (p *pacer) busy(now time.Time, bytes, count int) {
	p.charge(now, time.Duration(count)*p.radio.airtime(bytes))
}

// charge accounts for d of radio time from now (or from when the radio
// is free).
func (p *pacer) charge(now time.Time, d time.Duration) {
	if p.free.Before(now) {
		p.free = now
	}
	p.free = p.free.Add(d)
}

// refund takes back d of radio time charged earlier (never below now).
func (p *pacer) refund(now time.Time, d time.Duration) {
	p.free = later(p.free.Add(-d), now)
}

// rttEstimate smooths round trips as TCP does (RFC 6298 §2); srtt zero:
// no sample yet.
type rttEstimate struct {
	srtt, rttvar time.Duration
}

// sample feeds one round trip into the estimate.
func (e *rttEstimate) sample(rtt time.Duration) {
	if e.srtt == 0 {
		e.srtt, e.rttvar = rtt, rtt/2
		return
	}
	d := e.srtt - rtt
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + rtt) / 8
}

// ready reports whether a message may go now: the radio's backlog is
// below the slack.
func (p *pacer) ready(now time.Time) bool {
	return !p.free.After(now.Add(p.slack))
}

// readyWithin is ready with extra backlog allowed on top of the slack.
func (p *pacer) readyWithin(now time.Time, extra time.Duration) bool {
	return !p.free.After(now.Add(p.slack + extra))
}

// readyAt is when ready turns true.
func (p *pacer) readyAt() time.Time { return p.free.Add(-p.slack) }
