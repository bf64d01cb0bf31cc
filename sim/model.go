package sim

import (
	"fmt"
	"strings"
	"time"
)

// Radio is the per-node part of the link model. A painlessMesh node has one
// radio: every TCP connection it holds (uplink and children) shares its
// airtime, so a relay that forwards a broadcast to three children pays for
// three transmissions, one after another.
type Radio struct {
	// TxOverhead is the airtime a message occupies on the sender's radio
	// regardless of its size (framing, TCP/IP and the per-message software
	// path of a single-core ESP).
	TxOverhead time.Duration
	// ByteTime is the airtime of one byte on the sender's radio, i.e. the
	// inverse of the transmit bandwidth. Zero means unlimited bandwidth.
	ByteTime time.Duration
	// RxByteTime is the receive budget: bytes arriving from all links are
	// absorbed at most at one per RxByteTime. Zero means unlimited. A single
	// sender never waits on it when RxByteTime <= ByteTime; it limits
	// fan-in (several children talking to one parent at once).
	RxByteTime time.Duration
	// QueueBytes bounds the bytes waiting on the radio (all connections
	// together, the message on air included), as an ESP's free heap does.
	// A message that would exceed it is dropped and counted. Zero means
	// unbounded.
	QueueBytes int
}

// Link is the per-connection part of the link model.
type Link struct {
	// Latency is the fixed one-way propagation and processing delay of a
	// message after it left the sender's radio.
	Latency time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) per message. TCP
	// order is kept: a message never overtakes an earlier one on the same
	// connection.
	Jitter time.Duration
	// Loss is the probability that a transmitted message never arrives
	// (painlessMesh runs over TCP, so a lost message stands for data that
	// died with a broken connection or an exhausted buffer).
	Loss float64
	// FlapInterval is the mean time between connection flaps (exponentially
	// distributed). A flap closes the connection on both ends; the station
	// side dials again after the network's Redial delay and the nodes
	// re-sync. Zero means connections never flap.
	FlapInterval time.Duration
}

// Model is a complete link model: radio, links and the AP client limit the
// topology builders respect.
type Model struct {
	Name  string
	Radio Radio
	Link  Link
	// MaxConn is the soft-AP client limit (MAX_CONN): how many stations
	// (children) one node accepts. Builders use it as the fan-out limit.
	MaxConn int
}

// One-hop cost measured on ESP8266 painlessMesh (2019 study, DESIGN.md):
// about 2.1 ms plus 7.6 µs per byte for one message over one hop, 2.49 ms
// one way for a small message, 28 messages/s of 4,400 bytes.
const (
	esp8266Fixed   = 2100 * time.Microsecond
	esp8266PerByte = 7600 * time.Nanosecond
)

// ESP8266 is the link model for stock ESP8266 nodes, fitted to the measured
// one-hop figures above.
//
//   - ByteTime 7.6 µs (≈131 KB/s): the measured per-byte cost. It is the
//     bandwidth bottleneck, so it occupies the radio.
//   - TxOverhead 1.75 ms + Latency 0.1 ms + mean Jitter 0.25 ms = the
//     measured 2.1 ms fixed part. Most of it occupies the radio: with
//     back-to-back 4,400-byte messages the model gives 1/(1.75 ms +
//     33.4 ms) ≈ 28.4 messages/s, the measured 28. A small (50-byte)
//     message takes 2.1 ms + 0.38 ms ≈ 2.48 ms one way (measured 2.49 ms).
//   - RxByteTime = ByteTime: the radio receives no faster than it sends.
//   - QueueBytes 32 KiB: painlessMesh itself has no queue limit (its
//     MAX_MESSAGE_QUEUE is a documented no-op, docs/protocol.md Q-22); the
//     bound stands for the ~40 KB of heap an ESP8266 has left with WiFi and
//     the mesh running. Estimate, not measured.
//   - Jitter 0.5 ms: not measured; small next to the fixed cost.
//   - MaxConn 4: MAX_CONN on ESP8266 (configuration.hpp, docs/protocol.md §12).
//
// These are clean single-link numbers. Field reports of "tens of KB/s and
// 10–30 ms per hop" include channel contention between nodes (all mesh
// nodes share one WiFi channel), which a per-node model cannot derive; use
// Congested for that regime.
func ESP8266() Model {
	return Model{
		Name: "esp8266",
		Radio: Radio{
			TxOverhead: 1750 * time.Microsecond,
			ByteTime:   esp8266PerByte,
			RxByteTime: esp8266PerByte,
			QueueBytes: 32 << 10,
		},
		Link: Link{
			Latency: 100 * time.Microsecond,
			Jitter:  500 * time.Microsecond,
		},
		MaxConn: 4,
	}
}

// ESP32 is the link model for ESP32 nodes. No measurement of painlessMesh
// on ESP32 is at hand; the per-message and per-byte costs of the ESP8266
// model are dominated by the CPU (JSON, lwIP copies) rather than by the
// 802.11n PHY, so they are scaled by the CPU clock ratio (80 → 240 MHz,
// ÷3): 0.6 ms per message and 2.5 µs per byte (≈400 KB/s). QueueBytes
// 128 KiB stands for the larger free heap (~200 KB); MaxConn 10 is MAX_CONN
// on ESP32. Estimates, not measured.
func ESP32() Model {
	return Model{
		Name: "esp32",
		Radio: Radio{
			TxOverhead: 600 * time.Microsecond,
			ByteTime:   2500 * time.Nanosecond,
			RxByteTime: 2500 * time.Nanosecond,
			QueueBytes: 128 << 10,
		},
		Link: Link{
			Latency: 100 * time.Microsecond,
			Jitter:  200 * time.Microsecond,
		},
		MaxConn: 10,
	}
}

// Congested is an ESP8266 mesh under channel contention: tens of KB/s per
// node and 10–30 ms per hop, the figures field reports give for loaded
// meshes (all nodes share one WiFi channel, so a node's neighbours eat its
// airtime). 30 KB/s (33 µs per byte), 10 ms latency plus up to 20 ms jitter,
// ESP8266 queue and MAX_CONN.
func Congested() Model {
	return Model{
		Name: "congested",
		Radio: Radio{
			TxOverhead: 1 * time.Millisecond,
			ByteTime:   33 * time.Microsecond,
			RxByteTime: 33 * time.Microsecond,
			QueueBytes: 32 << 10,
		},
		Link: Link{
			Latency: 10 * time.Millisecond,
			Jitter:  20 * time.Millisecond,
		},
		MaxConn: 4,
	}
}

// Ideal is a near-perfect network for logic tests: 10 µs latency, no
// jitter, no airtime cost, unbounded queues, no loss. Time sync on it
// converges to the rounding of the offset formula. MaxConn is 10 (ESP32).
func Ideal() Model {
	return Model{
		Name:    "ideal",
		Link:    Link{Latency: 10 * time.Microsecond},
		MaxConn: 10,
	}
}

// Models lists the preset names ParseModel accepts.
func Models() []string { return []string{"esp8266", "esp32", "congested", "ideal"} }

// ParseModel returns the preset with the given name (case-insensitive).
func ParseModel(name string) (Model, error) {
	switch strings.ToLower(name) {
	case "esp8266":
		return ESP8266(), nil
	case "esp32":
		return ESP32(), nil
	case "congested":
		return Congested(), nil
	case "ideal":
		return Ideal(), nil
	}
	return Model{}, fmt.Errorf("sim: unknown link model %q (want one of %s)", name, strings.Join(Models(), ", "))
}

// Validate reports a model whose values make no sense.
func (m Model) Validate() error {
	switch {
	case m.Radio.TxOverhead < 0, m.Radio.ByteTime < 0, m.Radio.RxByteTime < 0:
		return fmt.Errorf("sim: model %q: negative radio time", m.Name)
	case m.Radio.QueueBytes < 0:
		return fmt.Errorf("sim: model %q: negative queue bound %d", m.Name, m.Radio.QueueBytes)
	}
	if err := m.Link.validate(); err != nil {
		return fmt.Errorf("sim: model %q: %w", m.Name, err)
	}
	if m.MaxConn < 0 {
		return fmt.Errorf("sim: model %q: negative MaxConn %d", m.Name, m.MaxConn)
	}
	return nil
}

func (l Link) validate() error {
	switch {
	case l.Latency < 0, l.Jitter < 0, l.FlapInterval < 0:
		return fmt.Errorf("negative link time")
	case !(l.Loss >= 0 && l.Loss <= 1): // also rejects NaN
		return fmt.Errorf("loss %v outside [0,1]", l.Loss)
	}
	return nil
}

// OneHop is the time a message of size bytes (NUL included) takes over one
// idle hop, jitter excluded: the model's answer to "2.1 ms + 7.6 µs/byte".
func (m Model) OneHop(size int) time.Duration {
	return m.Radio.TxOverhead + time.Duration(size)*m.Radio.ByteTime + m.Link.Latency
}
