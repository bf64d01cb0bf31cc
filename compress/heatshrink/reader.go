package heatshrink

import (
	"errors"
	"fmt"
	"io"
)

const inBufSize = 4 << 10

// Reader decompresses a heatshrink stream.
//
// Memory is fixed: a 2^Window byte window and a 4 KiB input buffer, whatever the input.
// Every item of at least 8 input bits yields at most 2^Lookahead bytes, so the output of
// any input, hostile or not, is bounded by about 2^Lookahead bytes per input byte; callers
// that must cap the output of untrusted input limit what they read (see package compress).
type Reader struct {
	r io.Reader
	p Params

	in     []byte
	ir, iw int
	eof    bool // r reported io.EOF

	acc   uint64 // unread input bits, the low nbits are valid
	nbits uint

	win  []byte
	mask int
	head int // total bytes output so far; the window position is head&mask

	refOff   int // pending back-reference: offset and bytes still to copy
	refCount int

	err error
}

// NewReader returns a Reader that decompresses the stream read from r, which must have
// been written with the same Params.
func NewReader(r io.Reader, p Params) (*Reader, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	z := &Reader{p: p, in: make([]byte, inBufSize), win: make([]byte, 1<<p.Window), mask: 1<<p.Window - 1}
	z.Reset(r)
	return z, nil
}

// Reset discards the Reader's state and makes it decompress a new stream from r with the
// same Params.
func (z *Reader) Reset(r io.Reader) {
	z.r = r
	z.ir, z.iw, z.eof = 0, 0, false
	z.acc, z.nbits = 0, 0
	clear(z.win) // the reference decoder's window starts as zeros
	z.head, z.refOff, z.refCount = 0, 0, 0
	z.err = nil
}

// Read decompresses into p. At the end of a well-formed stream it returns io.EOF; a
// stream that ends inside an item, or with padding bits that are not zero, yields an
// error wrapping ErrTruncated. Errors of the underlying reader are returned wrapped.
func (z *Reader) Read(p []byte) (int, error) {
	n := 0
	w, l := uint(z.p.Window), uint(z.p.Lookahead)
	refBits := 1 + w + l
	for n < len(p) {
		if z.refCount > 0 {
			k := min(z.refCount, len(p)-n)
			win, mask, head, off := z.win, z.mask, z.head, z.refOff
			for i := range k {
				c := win[(head-off)&mask]
				win[head&mask] = c
				head++
				p[n+i] = c
			}
			z.head = head
			z.refCount -= k
			n += k
			continue
		}
		if z.err != nil {
			break
		}
		if z.nbits < refBits || z.nbits < 9 {
			z.fill()
		}
		if z.nbits == 0 {
			z.finish()
			continue
		}
		if z.acc>>(z.nbits-1)&1 == 1 {
			if z.nbits < 9 {
				z.finish()
				continue
			}
			z.nbits -= 9
			c := byte(z.acc >> z.nbits)
			z.win[z.head&z.mask] = c
			z.head++
			p[n] = c
			n++
			continue
		}
		if z.nbits < refBits {
			z.finish()
			continue
		}
		z.nbits -= refBits
		item := z.acc >> z.nbits
		z.refCount = int(item&(1<<l-1)) + 1
		z.refOff = int(item>>l&(1<<w-1)) + 1
	}
	if n > 0 {
		return n, nil
	}
	return 0, z.err
}

// finish is called when the input cannot supply a whole item: it sets z.err to io.EOF if
// what is left is the encoder's zero padding, and to the cause otherwise.
func (z *Reader) finish() {
	if z.err != nil {
		return
	}
	if !z.eof {
		// fill stopped without EOF: it recorded why in z.err.
		return
	}
	if z.nbits >= 8 || z.acc&(1<<z.nbits-1) != 0 {
		z.err = fmt.Errorf("heatshrink: %d bits left at end of input after %d output bytes: %w",
			z.nbits, z.head, ErrTruncated)
		return
	}
	z.nbits = 0
	z.err = io.EOF
}

// fill moves input bytes into the bit accumulator until it holds at least 57 bits or the
// input ends, reading from the underlying reader as needed.
func (z *Reader) fill() {
	for z.nbits <= 56 {
		if z.ir == z.iw {
			if z.eof || z.err != nil {
				return
			}
			z.readInput()
			continue
		}
		z.acc = z.acc<<8 | uint64(z.in[z.ir])
		z.ir++
		z.nbits += 8
	}
}

// maxEmptyReads bounds how often an underlying reader may return no data and no error
// before the Reader gives up, as bufio does.
const maxEmptyReads = 100

func (z *Reader) readInput() {
	for range maxEmptyReads {
		k, err := z.r.Read(z.in)
		if k < 0 || k > len(z.in) {
			z.err = fmt.Errorf("heatshrink: underlying reader returned count %d", k)
			return
		}
		z.ir, z.iw = 0, k
		if err != nil {
			if errors.Is(err, io.EOF) {
				z.eof = true
			} else {
				z.err = fmt.Errorf("heatshrink: read compressed input: %w", err)
			}
			return
		}
		if k > 0 {
			return
		}
	}
	z.err = fmt.Errorf("heatshrink: read compressed input: %w", io.ErrNoProgress)
}
