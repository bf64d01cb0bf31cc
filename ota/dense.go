package ota

import (
	"errors"
	"fmt"
)

// Dense is the binary-to-text encoding Go nodes use between themselves for
// chunk payloads: basE91 (Joachim Henke, base91.sourceforge.net) with one
// alphabet change, '"' replaced by '-', so every output byte may stand
// unescaped inside a JSON string (no '"', no '\\', no control characters).
// It costs about 1.23 characters per byte against base64's 1.33, about 8%
// less air time per chunk. Z85 (1.25) was the alternative; basE91 is
// denser and, unlike Z85, needs no padding for lengths that are not a
// multiple of four. Hand-written because the one Go module with a
// configurable basE91 alphabet is not available to this project, and the
// algorithm is forty lines.
var Dense = denseEncoding{}

const denseAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,./:;<=>?@[]^_`{|}~-"

var denseDecode = func() (t [256]int16) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(denseAlphabet); i++ {
		t[denseAlphabet[i]] = int16(i)
	}
	return t
}()

// ErrDense reports text that is not valid Dense encoding.
var ErrDense = errors.New("ota: invalid dense encoding")

type denseEncoding struct{}

// EncodedLen is an upper bound of the encoded length of n bytes.
func (denseEncoding) EncodedLen(n int) int { return (n*16+12)/13 + 2 }

// AppendEncode appends the encoding of src to dst.
func (denseEncoding) AppendEncode(dst, src []byte) []byte {
	var b uint32
	var n uint
	for _, c := range src {
		b |= uint32(c) << n
		n += 8
		if n > 13 {
			v := b & 8191
			if v > 88 {
				b >>= 13
				n -= 13
			} else {
				v = b & 16383
				b >>= 14
				n -= 14
			}
			dst = append(dst, denseAlphabet[v%91], denseAlphabet[v/91])
		}
	}
	if n > 0 {
		dst = append(dst, denseAlphabet[b%91])
		if n > 7 || b > 90 {
			dst = append(dst, denseAlphabet[b/91])
		}
	}
	return dst
}

// EncodeToString returns the encoding of src.
func (e denseEncoding) EncodeToString(src []byte) string {
	return string(e.AppendEncode(make([]byte, 0, e.EncodedLen(len(src))), src))
}

// AppendDecode appends the bytes encoded in src to dst. Unlike the stock
// base64 reader it rejects characters outside the alphabet: a Go peer
// never sends them, so one is corruption.
func (denseEncoding) AppendDecode(dst []byte, src string) ([]byte, error) {
	var b uint32
	var n uint
	v := -1
	for i := 0; i < len(src); i++ {
		d := denseDecode[src[i]]
		if d < 0 {
			return dst, fmt.Errorf("%w: byte %q at offset %d", ErrDense, src[i], i)
		}
		if v < 0 {
			v = int(d)
			continue
		}
		v += int(d) * 91
		b |= uint32(v) << n
		if v&8191 > 88 {
			n += 13
		} else {
			n += 14
		}
		for n > 7 {
			dst = append(dst, byte(b))
			b >>= 8
			n -= 8
		}
		v = -1
	}
	if v >= 0 {
		dst = append(dst, byte(b|uint32(v)<<n))
	}
	return dst, nil
}

// DecodeString returns the bytes encoded in s.
func (e denseEncoding) DecodeString(s string) ([]byte, error) {
	return e.AppendDecode(make([]byte, 0, len(s)*13/16+1), s)
}
