package heatshrink

import (
	"errors"
	"fmt"
	"io"
)

// ErrClosed is returned by Writer.Write after Close.
var ErrClosed = errors.New("heatshrink: write after close")

const (
	// slack is how much input the Writer buffers beyond the window before it slides the
	// buffer; larger means fewer slides (each costs a pass over the hash table).
	slack = 64 << 10
	// outFlush is the size at which encoded bytes are passed to the underlying writer.
	outFlush = 4 << 10
	noPos    = -1
)

// Writer compresses what is written to it into a heatshrink stream.
//
// Its choice of matches follows the reference encoder (greedy longest match, the nearest
// one on ties, within a zero-filled initial window, the same break-even length), so for
// the same Params its output is byte-identical to the reference tool's. Matches are found
// through hash chains keyed by two bytes instead of the reference's one-byte chains; every
// match worth emitting is at least two bytes long, so the result is the same.
//
// Memory: about 2·2^Window+64 KiB of buffer, 4 bytes per buffered byte of chain links and
// a 256 KiB hash table; this runs on the distributing side, not on the device.
type Writer struct {
	w        io.Writer
	p        Params
	wsize    int
	lsize    int
	minMatch int

	// buf holds the 2^Window bytes before pos (initially the zero-filled window) and the
	// input not yet encoded.
	buf  []byte
	pos  int // next position to encode
	ins  int // next position to insert into the hash chains
	head []int32
	prev []int32

	acc   uint64 // pending output bits, low nbits valid
	nbits uint
	out   []byte

	err    error
	closed bool
}

// NewWriter returns a Writer that writes the compressed stream to w. Close must be called
// to encode the buffered tail and flush; it does not close w.
func NewWriter(w io.Writer, p Params) (*Writer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	z := &Writer{p: p, wsize: 1 << p.Window, lsize: 1 << p.Lookahead, minMatch: p.minMatch()}
	capacity := z.wsize + z.lsize + max(2*z.wsize, slack)
	z.buf = make([]byte, 0, capacity)
	z.prev = make([]int32, capacity)
	z.head = make([]int32, 1<<16)
	z.out = make([]byte, 0, outFlush+8)
	z.Reset(w)
	return z, nil
}

// Reset discards the Writer's state and makes it write a new stream to w with the same
// Params, reusing its buffers.
func (z *Writer) Reset(w io.Writer) {
	z.w = w
	z.buf = z.buf[:z.wsize]
	clear(z.buf)
	z.pos, z.ins = z.wsize, 0
	for i := range z.head {
		z.head[i] = noPos
	}
	z.acc, z.nbits = 0, 0
	z.out = z.out[:0]
	z.err, z.closed = nil, false
}

// Write compresses p. Encoding of the last 2^Lookahead bytes waits for more input or Close.
func (z *Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, ErrClosed
	}
	if z.err != nil {
		return 0, z.err
	}
	n := 0
	for len(p) > 0 {
		if len(z.buf) == cap(z.buf) {
			z.slide()
		}
		k := min(len(p), cap(z.buf)-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		n += k
		for len(z.buf)-z.pos >= z.lsize {
			z.step(z.lsize)
		}
		if len(z.out) >= outFlush {
			if err := z.flushOut(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Close encodes the remaining input, pads the last byte with zero bits and writes
// everything to the underlying writer. It does not close that writer.
func (z *Writer) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	if z.err != nil {
		return z.err
	}
	for z.pos < len(z.buf) {
		z.step(min(z.lsize, len(z.buf)-z.pos))
	}
	if z.nbits > 0 {
		z.out = append(z.out, byte(z.acc<<(8-z.nbits)))
		z.nbits = 0
	}
	return z.flushOut()
}

// step encodes one item at pos; maxLen bounds the match (the lookahead, or what is left
// of the input at the end).
func (z *Writer) step(maxLen int) {
	buf := z.buf
	pos := z.pos
	bestLen, bestPos := 0, 0
	if maxLen >= 2 {
		// Link every earlier position into its two-byte chain; the chains are then
		// ordered nearest first, which gives the reference encoder's tie-break.
		for ; z.ins < pos; z.ins++ {
			k := uint16(buf[z.ins])<<8 | uint16(buf[z.ins+1])
			z.prev[z.ins] = z.head[k]
			z.head[k] = int32(z.ins)
		}
		limit := pos - z.wsize
		needle := buf[pos : pos+maxLen]
		for cand := int(z.head[uint16(buf[pos])<<8|uint16(buf[pos+1])]); cand >= limit; cand = int(z.prev[cand]) {
			// Only a candidate that agrees at bestLen can beat the current best.
			if buf[cand+bestLen] != needle[bestLen] {
				continue
			}
			hay := buf[cand : cand+maxLen]
			n := 2
			for n < maxLen && hay[n] == needle[n] {
				n++
			}
			if n > bestLen {
				bestLen, bestPos = n, cand
				if n == maxLen {
					break
				}
			}
		}
	}
	if bestLen >= z.minMatch {
		w, l := uint(z.p.Window), uint(z.p.Lookahead)
		z.putBits(uint64(pos-bestPos-1)<<l|uint64(bestLen-1), 1+w+l)
		z.pos += bestLen
		return
	}
	z.putBits(1<<8|uint64(buf[pos]), 9)
	z.pos++
}

func (z *Writer) putBits(v uint64, n uint) {
	z.acc = z.acc<<n | v
	z.nbits += n
	for z.nbits >= 8 {
		z.nbits -= 8
		z.out = append(z.out, byte(z.acc>>z.nbits))
	}
}

// slide drops input that has left the window, keeping 2^Window bytes before pos, and
// rebases the hash chains.
func (z *Writer) slide() {
	// Write only calls this on a full buffer with less than a lookahead left to encode,
	// so shift is at least the buffer's slack.
	shift := z.pos - z.wsize
	n := copy(z.buf, z.buf[shift:])
	z.buf = z.buf[:n]
	z.pos -= shift
	z.ins -= shift
	s := int32(shift)
	rebase := func(v int32) int32 {
		if v < s {
			return noPos
		}
		return v - s
	}
	for i, v := range z.head {
		z.head[i] = rebase(v)
	}
	for i := 0; i < z.ins; i++ {
		z.prev[i] = rebase(z.prev[i+shift])
	}
}

func (z *Writer) flushOut() error {
	if len(z.out) == 0 {
		return nil
	}
	if _, err := z.w.Write(z.out); err != nil {
		z.err = fmt.Errorf("heatshrink: write compressed output: %w", err)
		return z.err
	}
	z.out = z.out[:0]
	return nil
}
