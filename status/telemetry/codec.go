package telemetry

import (
	"fmt"
	"time"
)

// EncoderConfig sets how often an Encoder sends a keyframe. Zero fields
// take the defaults.
type EncoderConfig struct {
	// KeyframeEvery: a keyframe at least every K frames (default 10;
	// 1 sends keyframes only).
	KeyframeEvery int
	// KeyframeInterval: and at least every T (default 5 minutes), so a
	// root that lost a keyframe recovers within T even without asking.
	KeyframeInterval time.Duration
}

// Defaults for EncoderConfig.
const (
	DefaultKeyframeEvery    = 10
	DefaultKeyframeInterval = 5 * time.Minute
)

func (c EncoderConfig) withDefaults() EncoderConfig {
	if c.KeyframeEvery <= 0 {
		c.KeyframeEvery = DefaultKeyframeEvery
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	return c
}

// Encoder writes one node's frames. Not safe for concurrent use.
type Encoder struct {
	cfg      EncoderConfig
	seq      uint16 // of the next frame
	kfid     uint8  // of the last keyframe
	base     vector // values of the last keyframe
	haveBase bool
	sinceKey int // frames sent since the last keyframe, that keyframe included
	keyAt    time.Time
	force    bool
}

// NewEncoder returns an encoder whose first frame is a keyframe with the
// start flag.
func NewEncoder(cfg EncoderConfig) *Encoder {
	return &Encoder{cfg: cfg.withDefaults()}
}

// RequestKeyframe makes the next frame a keyframe (the root lost one).
func (e *Encoder) RequestKeyframe() { e.force = true }

// Encode returns the next frame carrying v: a keyframe when one is due
// (first frame, requested, every K frames, every T, or when a delta would
// not be smaller), else a delta against the last keyframe. ts is the node
// time written into the frame; now only paces keyframes. priority marks a
// frame sent early because of a critical change. The result is at most
// MaxFrameSize bytes and is not reused by the encoder.
func (e *Encoder) Encode(now time.Time, ts uint32, v Values, priority bool) []byte {
	x := v.vector()
	h := Header{Priority: priority, Start: !e.haveBase, Seq: e.seq, Timestamp: ts}
	out := make([]byte, 0, MaxFrameSize)

	key := !e.haveBase || e.force || e.sinceKey >= e.cfg.KeyframeEvery ||
		now.Sub(e.keyAt) >= e.cfg.KeyframeInterval
	if !key {
		h.KeyframeID = e.kfid
		out = appendDeltaBody(appendHeader(out, h), &x, &e.base)
		// A delta no smaller than a keyframe is replaced by the
		// keyframe: same bytes or fewer, and self-contained.
		if len(out)-headerSize >= keyframeBodySize(&x) {
			key = true
			out = out[:0]
		}
	}
	if key {
		e.kfid++
		h.Keyframe = true
		h.KeyframeID = e.kfid
		out = appendKeyframeBody(appendHeader(out, h), &x)
		e.base = x
		e.haveBase = true
		e.sinceKey = 0
		e.keyAt = now
		e.force = false
	}
	e.sinceKey++
	e.seq++
	return out
}

func keyframeBodySize(x *vector) int {
	var buf [MaxFrameSize]byte
	return len(appendKeyframeBody(buf[:0], x))
}

// Frame is a decoded frame: its header and the node's reconstructed values.
type Frame struct {
	Header
	Values Values
	// Missed is how many frames the sequence numbers say were lost
	// between the previous accepted frame of this node and this one.
	Missed int
}

// Decoder reconstructs the values of many nodes' frames (one state per
// node). Not safe for concurrent use.
type Decoder struct {
	nodes map[uint32]*decoderState
}

type decoderState struct {
	haveKey  bool
	kfid     uint8
	base     vector
	lastSeq  uint16
	needKey  bool // a delta was refused for want of its keyframe
	haveLast bool
}

// NewDecoder returns a decoder that knows no node yet.
func NewDecoder() *Decoder {
	return &Decoder{nodes: make(map[uint32]*decoderState)}
}

// newer reports whether sequence number a comes after b (serial number
// arithmetic on 16 bits).
func newer(a, b uint16) bool { return int16(a-b) > 0 }

// Decode reads one frame from node. A keyframe is always accepted (it is
// self-contained, and a restarted node begins again at sequence 0). A
// delta frame is accepted only if it is newer than the last accepted frame
// (else ErrStale) and relative to the node's current keyframe (else
// ErrKeyframeMismatch, and NeedsKeyframe reports true until a keyframe
// arrives). A frame that fails to decode changes nothing.
func (d *Decoder) Decode(node uint32, frame []byte) (Frame, error) {
	h, err := ParseHeader(frame)
	if err != nil {
		return Frame{}, err
	}
	st := d.nodes[node]
	body := frame[headerSize:]
	if h.Keyframe {
		x, err := parseKeyframe(body)
		if err != nil {
			return Frame{}, err
		}
		if st == nil {
			st = &decoderState{}
			d.nodes[node] = st
		}
		f := Frame{Header: h, Values: x.values()}
		if st.haveLast && newer(h.Seq, st.lastSeq) && !h.Start {
			f.Missed = int(h.Seq-st.lastSeq) - 1
		}
		*st = decoderState{haveKey: true, kfid: h.KeyframeID, base: x, lastSeq: h.Seq, haveLast: true}
		return f, nil
	}
	if st != nil && st.haveLast && !newer(h.Seq, st.lastSeq) {
		return Frame{}, fmt.Errorf("%w: sequence %d, already at %d", ErrStale, h.Seq, st.lastSeq)
	}
	if st == nil || !st.haveKey || st.kfid != h.KeyframeID {
		if st == nil {
			st = &decoderState{}
			d.nodes[node] = st
		}
		st.needKey = true
		if !st.haveKey {
			return Frame{}, fmt.Errorf("%w: frame %d needs keyframe %d, none received", ErrKeyframeMismatch, h.Seq, h.KeyframeID)
		}
		return Frame{}, fmt.Errorf("%w: frame %d needs keyframe %d, have %d", ErrKeyframeMismatch, h.Seq, h.KeyframeID, st.kfid)
	}
	x, err := parseDelta(body, &st.base)
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Header: h, Values: x.values(), Missed: int(h.Seq-st.lastSeq) - 1}
	st.lastSeq = h.Seq
	return f, nil
}

// NeedsKeyframe reports whether node's last delta frame was refused for
// want of its keyframe and no keyframe has arrived since.
func (d *Decoder) NeedsKeyframe(node uint32) bool {
	st := d.nodes[node]
	return st != nil && st.needKey
}

// Forget drops a node's state.
func (d *Decoder) Forget(node uint32) { delete(d.nodes, node) }
