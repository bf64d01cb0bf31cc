// Package telemetry is the compact binary frame of the status telemetry
// stream (option 2C): one frame of at most MaxFrameSize bytes per report,
// carried base64 in a status extension package (status/PROTOCOL.md).
//
// A node runs an Encoder; the root runs one Decoder for all nodes. Keyframes
// carry every value; delta frames carry only the values that differ from the
// last keyframe, each as a zigzag varint difference, behind a presence
// bitmap. Deltas are taken against the keyframe rather than the previous
// frame so that a lost delta costs nothing: only a lost keyframe breaks the
// chain, the Decoder sees it from the keyframe id, refuses the deltas that
// follow (ErrKeyframeMismatch) and the root can ask for a new keyframe.
//
// Frame layout (version 1, integers little-endian):
//
//	0     version (1)
//	1     flags: bit0 keyframe, bit1 priority, bit2 start; other bits 0
//	2-3   sequence number (u16, +1 per frame, wraps)
//	4     keyframe id (u8): the id of this keyframe, or of the keyframe a
//	      delta frame is relative to
//	5-8   timestamp: the node's mesh time in µs (u32, wraps like node time)
//	9-    keyframe: every field in Fields order
//	      delta:    uvarint presence bitmap (bit i = field i), then the
//	                present fields in order
//
// A field is either a varint field (keyframe: uvarint value; delta: zigzag
// uvarint of value − keyframe value) or a fixed field (the raw value in both
// frame kinds; 1 or 4 bytes), for values where a difference means nothing
// (flag sets, states, hashes) or is no shorter (single bytes).
package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the frame format version this package writes.
const Version = 1

// MaxFrameSize is the largest frame the Encoder writes and the Decoder
// accepts.
const MaxFrameSize = 64

const headerSize = 9

// Flag bits of frame byte 1.
const (
	flagKeyframe = 1 << 0
	flagPriority = 1 << 1
	flagStart    = 1 << 2
	flagsKnown   = flagKeyframe | flagPriority | flagStart
)

// Values are the node metrics one frame carries. Units are fixed by the
// format; the encoder clamps LossPermille to 1000.
type Values struct {
	Uptime          uint32 // seconds since the node started
	FreeMemory      uint32 // bytes; 0 = unknown
	MessagesRx      uint32 // counters, wrapping like the C++ uint32 counters
	MessagesTx      uint32
	MessagesDropped uint32
	Latency         uint32 // µs, one-way estimate to the collector; 0 = unknown
	Throughput      uint32 // bytes/s, received + sent over the last interval
	Nodes           uint16 // nodes known to the sender, itself excluded
	LossPermille    uint16 // dropped / (sent + dropped) over the last interval, 0..1000
	Interval        uint16 // seconds until the next regular frame; 0 = unknown
	Connections     uint8
	RSSI            int8  // dBm; 0 = unknown
	WiFi            uint8 // signal 0..100
	Alerts          uint8 // alert flag bits (status.AlertFlags)
	DeviceStatus    uint8 // application status byte (as StatusPackage "status")
	OTAState        uint8 // status.OTAState
	OTAProgress     uint8 // percent
	FirmwareHash    uint32
}

type fieldKind uint8

const (
	kindVarint  fieldKind = iota // keyframe uvarint, delta zigzag uvarint
	kindFixed8                   // one raw byte in both frame kinds
	kindFixed32                  // four raw bytes (LE) in both frame kinds
)

type field struct {
	name string
	kind fieldKind
	max  uint64
	get  func(*Values) uint64
	set  func(*Values, uint64)
}

const (
	maxU32 = 1<<32 - 1
	maxU16 = 1<<16 - 1
)

// fields is the version-1 field table; the order is the wire order and the
// presence bitmap bit number. Appending fields needs a new Version.
var fields = [...]field{
	{"uptime", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.Uptime) }, func(v *Values, x uint64) { v.Uptime = uint32(x) }},
	{"freeMemory", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.FreeMemory) }, func(v *Values, x uint64) { v.FreeMemory = uint32(x) }},
	{"messagesRx", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.MessagesRx) }, func(v *Values, x uint64) { v.MessagesRx = uint32(x) }},
	{"messagesTx", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.MessagesTx) }, func(v *Values, x uint64) { v.MessagesTx = uint32(x) }},
	{"messagesDropped", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.MessagesDropped) }, func(v *Values, x uint64) { v.MessagesDropped = uint32(x) }},
	{"latency", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.Latency) }, func(v *Values, x uint64) { v.Latency = uint32(x) }},
	{"throughput", kindVarint, maxU32, func(v *Values) uint64 { return uint64(v.Throughput) }, func(v *Values, x uint64) { v.Throughput = uint32(x) }},
	{"nodes", kindVarint, maxU16, func(v *Values) uint64 { return uint64(v.Nodes) }, func(v *Values, x uint64) { v.Nodes = uint16(x) }},
	{"lossPermille", kindVarint, 1000, func(v *Values) uint64 { return uint64(v.LossPermille) }, func(v *Values, x uint64) { v.LossPermille = uint16(x) }},
	{"interval", kindVarint, maxU16, func(v *Values) uint64 { return uint64(v.Interval) }, func(v *Values, x uint64) { v.Interval = uint16(x) }},
	{"connections", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.Connections) }, func(v *Values, x uint64) { v.Connections = uint8(x) }},
	{"rssi", kindFixed8, 255, func(v *Values) uint64 { return uint64(uint8(v.RSSI)) }, func(v *Values, x uint64) { v.RSSI = int8(uint8(x)) }},
	{"wifi", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.WiFi) }, func(v *Values, x uint64) { v.WiFi = uint8(x) }},
	{"alerts", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.Alerts) }, func(v *Values, x uint64) { v.Alerts = uint8(x) }},
	{"deviceStatus", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.DeviceStatus) }, func(v *Values, x uint64) { v.DeviceStatus = uint8(x) }},
	{"otaState", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.OTAState) }, func(v *Values, x uint64) { v.OTAState = uint8(x) }},
	{"otaProgress", kindFixed8, 255, func(v *Values) uint64 { return uint64(v.OTAProgress) }, func(v *Values, x uint64) { v.OTAProgress = uint8(x) }},
	{"firmwareHash", kindFixed32, maxU32, func(v *Values) uint64 { return uint64(v.FirmwareHash) }, func(v *Values, x uint64) { v.FirmwareHash = uint32(x) }},
}

const numFields = len(fields)

// FieldNames lists the frame fields in wire order (presence bitmap bit i
// is FieldNames()[i]).
func FieldNames() []string {
	names := make([]string, numFields)
	for i, f := range fields {
		names[i] = f.name
	}
	return names
}

type vector [numFields]uint64

func (v *Values) vector() vector {
	var x vector
	for i := range fields {
		x[i] = fields[i].get(v)
	}
	if x[8] > 1000 { // lossPermille
		x[8] = 1000
	}
	return x
}

func (x *vector) values() Values {
	var v Values
	for i := range fields {
		fields[i].set(&v, x[i])
	}
	return v
}

// Errors the Decoder returns; every error from Decode wraps one of them.
var (
	ErrTruncated        = errors.New("telemetry: frame truncated")
	ErrTooLarge         = errors.New("telemetry: frame larger than 64 bytes")
	ErrVersion          = errors.New("telemetry: unknown frame version")
	ErrMalformed        = errors.New("telemetry: malformed frame")
	ErrKeyframeMismatch = errors.New("telemetry: delta frame without its keyframe")
	ErrStale            = errors.New("telemetry: stale frame")
)

// Header is the fixed part of a frame.
type Header struct {
	Version    uint8
	Keyframe   bool
	Priority   bool   // sent at once because of a critical change
	Start      bool   // first frame of an encoder (the node started)
	Seq        uint16 // frame sequence number
	KeyframeID uint8
	Timestamp  uint32 // node time, µs
}

// ParseHeader reads and checks the fixed part of a frame.
func ParseHeader(frame []byte) (Header, error) {
	if len(frame) > MaxFrameSize {
		return Header{}, fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(frame))
	}
	if len(frame) < headerSize {
		return Header{}, fmt.Errorf("%w: %d bytes, header needs %d", ErrTruncated, len(frame), headerSize)
	}
	if frame[0] != Version {
		return Header{}, fmt.Errorf("%w %d", ErrVersion, frame[0])
	}
	fl := frame[1]
	if fl&^flagsKnown != 0 {
		return Header{}, fmt.Errorf("%w: reserved flag bits %#02x", ErrMalformed, fl&^flagsKnown)
	}
	return Header{
		Version:    frame[0],
		Keyframe:   fl&flagKeyframe != 0,
		Priority:   fl&flagPriority != 0,
		Start:      fl&flagStart != 0,
		Seq:        binary.LittleEndian.Uint16(frame[2:4]),
		KeyframeID: frame[4],
		Timestamp:  binary.LittleEndian.Uint32(frame[5:9]),
	}, nil
}

func appendHeader(dst []byte, h Header) []byte {
	var fl byte
	if h.Keyframe {
		fl |= flagKeyframe
	}
	if h.Priority {
		fl |= flagPriority
	}
	if h.Start {
		fl |= flagStart
	}
	dst = append(dst, Version, fl)
	dst = binary.LittleEndian.AppendUint16(dst, h.Seq)
	dst = append(dst, h.KeyframeID)
	return binary.LittleEndian.AppendUint32(dst, h.Timestamp)
}

func zigzag(d int64) uint64   { return uint64(d<<1) ^ uint64(d>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendKeyframeBody(dst []byte, x *vector) []byte {
	for i := range fields {
		dst = appendField(dst, fields[i].kind, x[i])
	}
	return dst
}

func appendField(dst []byte, k fieldKind, u uint64) []byte {
	switch k {
	case kindFixed8:
		return append(dst, byte(u))
	case kindFixed32:
		return binary.LittleEndian.AppendUint32(dst, uint32(u))
	}
	return binary.AppendUvarint(dst, u)
}

func appendDeltaBody(dst []byte, x, base *vector) []byte {
	var present uint64
	for i := range fields {
		if x[i] != base[i] {
			present |= 1 << i
		}
	}
	dst = binary.AppendUvarint(dst, present)
	for i := range fields {
		if present&(1<<i) == 0 {
			continue
		}
		if fields[i].kind == kindVarint {
			dst = binary.AppendUvarint(dst, zigzag(int64(x[i])-int64(base[i])))
		} else {
			dst = appendField(dst, fields[i].kind, x[i])
		}
	}
	return dst
}

// reader walks a frame body; every read checks the bounds.
type reader struct {
	b   []byte
	off int
}

func (r *reader) uvarint() (uint64, error) {
	u, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		return 0, fmt.Errorf("%w: varint at byte %d", ErrTruncated, r.off)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: varint overflow at byte %d", ErrMalformed, r.off)
	}
	r.off += n
	return u, nil
}

func (r *reader) fixed(k fieldKind) (uint64, error) {
	n := 1
	if k == kindFixed32 {
		n = 4
	}
	if len(r.b)-r.off < n {
		return 0, fmt.Errorf("%w: %d-byte field at byte %d", ErrTruncated, n, r.off)
	}
	var u uint64
	if n == 1 {
		u = uint64(r.b[r.off])
	} else {
		u = uint64(binary.LittleEndian.Uint32(r.b[r.off:]))
	}
	r.off += n
	return u, nil
}

func parseKeyframe(body []byte) (vector, error) {
	r := reader{b: body}
	var x vector
	for i := range fields {
		f := &fields[i]
		var u uint64
		var err error
		if f.kind == kindVarint {
			u, err = r.uvarint()
		} else {
			u, err = r.fixed(f.kind)
		}
		if err != nil {
			return x, fmt.Errorf("keyframe field %s: %w", f.name, err)
		}
		if u > f.max {
			return x, fmt.Errorf("%w: keyframe field %s = %d exceeds %d", ErrMalformed, f.name, u, f.max)
		}
		x[i] = u
	}
	if r.off != len(body) {
		return x, fmt.Errorf("%w: %d trailing bytes after keyframe", ErrMalformed, len(body)-r.off)
	}
	return x, nil
}

func parseDelta(body []byte, base *vector) (vector, error) {
	r := reader{b: body}
	x := *base
	present, err := r.uvarint()
	if err != nil {
		return x, fmt.Errorf("presence bitmap: %w", err)
	}
	if present>>numFields != 0 {
		return x, fmt.Errorf("%w: presence bitmap %#x names unknown fields", ErrMalformed, present)
	}
	for i := range fields {
		if present&(1<<i) == 0 {
			continue
		}
		f := &fields[i]
		if f.kind == kindVarint {
			u, err := r.uvarint()
			if err != nil {
				return x, fmt.Errorf("delta field %s: %w", f.name, err)
			}
			d := unzigzag(u)
			// No valid difference of two u32 values exceeds 2^32 in size;
			// checking first keeps the sum below from overflowing.
			if d > maxU32 || d < -maxU32 {
				return x, fmt.Errorf("%w: delta field %s: difference %d out of range", ErrMalformed, f.name, d)
			}
			v := int64(base[i]) + d
			if v < 0 || uint64(v) > f.max {
				return x, fmt.Errorf("%w: delta field %s: %d%+d out of range", ErrMalformed, f.name, base[i], d)
			}
			x[i] = uint64(v)
		} else {
			u, err := r.fixed(f.kind)
			if err != nil {
				return x, fmt.Errorf("delta field %s: %w", f.name, err)
			}
			x[i] = u
		}
	}
	if r.off != len(body) {
		return x, fmt.Errorf("%w: %d trailing bytes after delta", ErrMalformed, len(body)-r.off)
	}
	return x, nil
}
