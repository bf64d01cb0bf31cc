// Package compress holds the transfer encodings for OTA firmware images: the distributor
// compresses the whole image once, then chunks the result (compressing each chunk alone
// loses most of the gain, see DESIGN.md), and a receiver decompresses while it writes.
//
// The stock painlessMesh protocol only carries a "compressed" flag (docs/protocol.md §8.6); the
// method is agreed out of band, so each method's parameters are fixed here:
//
//   - None: the image as is.
//   - Deflate: a zlib stream (RFC 1950) at level 9. The ESP32 ROM carries miniz's tinfl
//     inflater, which parses the zlib header itself; the Adler-32 trailer lets a receiver
//     check the decompressed image before it even computes the MD5, unlike raw deflate;
//     gzip's header is not understood by tinfl. Level 9 costs only distributor CPU, once
//     per image: inflating is as fast and needs the same memory at every level. The
//     inflater needs a 32 KiB window (Go's compress/flate cannot write a smaller one),
//     fine on an ESP32, heavy for an ESP8266.
//   - Heatshrink: LZSS for small-RAM targets with Window 11 and Lookahead 4 (the reference
//     tool's defaults). A decoder needs 2 KiB of window plus its input buffer (about 2.3 KiB
//     with a 256-byte buffer, versus over 40 KiB for inflate), which an ESP8266 can spare;
//     a larger window gains little (about 81% of the image at w=11, 77% at w=13 on
//     FirmwareLike images, against 60% for Deflate).
package compress

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/meshfleet/meshfleet/compress/heatshrink"
)

// Method names a transfer encoding.
type Method string

// The transfer encodings.
const (
	None       Method = "none"
	Deflate    Method = "deflate"
	Heatshrink Method = "heatshrink"
)

// Methods lists every Method, in order of preference for a receiver with enough RAM.
func Methods() []Method { return []Method{Deflate, Heatshrink, None} }

// The parameters every Heatshrink stream uses.
const (
	HeatshrinkWindow    = 11
	HeatshrinkLookahead = 4
)

// DeflateLevel is the zlib compression level used by Compress.
const DeflateLevel = zlib.BestCompression

var heatshrinkParams = heatshrink.Params{Window: HeatshrinkWindow, Lookahead: HeatshrinkLookahead}

// Sentinel errors, wrapped by the functions of this package.
var (
	ErrUnknownMethod = errors.New("unknown compression method")
	ErrTooLarge      = errors.New("decompressed output exceeds the limit")
	// ErrCorrupt marks input that is not a valid stream of the method: bad header or
	// checksum, truncation, trailing data. Errors of the underlying reader are not marked.
	ErrCorrupt = errors.New("corrupt compressed data")
)

// ParseMethod returns the Method named s (case and surrounding space are ignored).
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ToLower(strings.TrimSpace(s)))
	if err := m.check(); err != nil {
		return "", err
	}
	return m, nil
}

func (m Method) check() error {
	switch m {
	case None, Deflate, Heatshrink:
		return nil
	}
	return fmt.Errorf("compression method %q (want one of none, deflate, heatshrink): %w", string(m), ErrUnknownMethod)
}

// String returns the method's name.
func (m Method) String() string { return string(m) }

// Compress encodes the whole image img with m.
func Compress(m Method, img []byte) ([]byte, error) {
	if m == None {
		return bytes.Clone(img), nil
	}
	var buf bytes.Buffer
	w, err := NewCompressor(m, &buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(img); err != nil {
		return nil, fmt.Errorf("compress %s: %w", m, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compress %s: %w", m, err)
	}
	return buf.Bytes(), nil
}

// NewCompressor returns a writer that encodes what is written to it with m into w. Close
// finishes the stream; it does not close w.
func NewCompressor(m Method, w io.Writer) (io.WriteCloser, error) {
	switch m {
	case None:
		return nopCloser{w}, nil
	case Deflate:
		return zlib.NewWriterLevel(w, DeflateLevel)
	case Heatshrink:
		return heatshrink.NewWriter(w, heatshrinkParams)
	}
	return nil, m.check()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// NewDecompressor returns a reader of the data encoded with m that r yields. It reads
// nothing from r until it is first read. Its errors wrap ErrCorrupt for malformed input;
// errors of r are returned wrapped as they are.
//
// Output is not limited: a small hostile input can expand about a thousandfold (Deflate)
// or more (Heatshrink). Use DecompressTo, or limit what is read, for untrusted input.
func NewDecompressor(m Method, r io.Reader) (io.Reader, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m == None {
		return r, nil
	}
	return &decompressor{m: m, src: &source{r: r}}, nil
}

// source passes reads through and remembers whether an error came from the reader itself,
// so that it is not reported as corrupt data.
type source struct {
	r   io.Reader
	err error
}

// Read also turns a reader that keeps returning nothing into io.ErrNoProgress (as bufio
// does when filling), since io.ReadFull inside zlib would otherwise spin forever.
func (s *source) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for range 100 {
		n, err := s.r.Read(p)
		if err != nil && err != io.EOF {
			s.err = err
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	s.err = io.ErrNoProgress
	return 0, s.err
}

type decompressor struct {
	m   Method
	src *source
	br  *bufio.Reader // Deflate: lets zlib stop exactly at the end of its stream
	dec io.Reader
	err error
}

func (d *decompressor) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.dec == nil {
		if err := d.open(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // empty input is not a stream
			}
			d.err = d.classify(err)
			return 0, d.err
		}
	}
	n, err := d.dec.Read(p)
	if err == io.EOF && d.br != nil {
		// zlib ignores what follows its checksum; a firmware transfer must not.
		if _, perr := d.br.ReadByte(); perr == nil {
			err = fmt.Errorf("decompress %s: data after the end of the stream: %w", d.m, ErrCorrupt)
		} else if perr != io.EOF {
			err = perr
		}
	}
	if err != nil {
		d.err = d.classify(err)
	}
	return n, d.err
}

func (d *decompressor) open() error {
	switch d.m {
	case Deflate:
		d.br = bufio.NewReader(d.src)
		zr, err := zlib.NewReader(d.br)
		if err != nil {
			return err
		}
		d.dec = zr
	default:
		hr, err := heatshrink.NewReader(d.src, heatshrinkParams)
		if err != nil {
			return err
		}
		d.dec = hr
	}
	return nil
}

func (d *decompressor) classify(err error) error {
	switch {
	case err == io.EOF:
		return io.EOF
	case errors.Is(err, ErrCorrupt):
		return err
	case d.src.err != nil && errors.Is(err, d.src.err), errors.Is(err, io.ErrNoProgress):
		return fmt.Errorf("decompress %s: read input: %w", d.m, err)
	}
	return fmt.Errorf("decompress %s: %w: %w", d.m, ErrCorrupt, err)
}

// DecompressTo decodes the m-encoded stream read from r into w and returns how many bytes
// it wrote. It guards against decompression bombs: if the output would exceed maxOut
// bytes it writes the first maxOut and returns an error wrapping ErrTooLarge.
func DecompressTo(m Method, r io.Reader, w io.Writer, maxOut int64) (int64, error) {
	if maxOut < 0 {
		return 0, fmt.Errorf("decompress %s: negative output limit %d", m, maxOut)
	}
	d, err := NewDecompressor(m, r)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 32<<10)
	var n int64
	for empty := 0; ; {
		k, rerr := d.Read(buf)
		if k == 0 && rerr == nil {
			// A reader that never delivers must not hang the caller (same limit as bufio).
			if empty++; empty == 100 {
				rerr = io.ErrNoProgress
			}
		} else {
			empty = 0
		}
		if k > 0 {
			over := n+int64(k) > maxOut
			if over {
				k = int(maxOut - n)
			}
			wn, werr := w.Write(buf[:k])
			n += int64(wn)
			if werr == nil && wn < k {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, fmt.Errorf("decompress %s: write output: %w", m, werr)
			}
			if over {
				return n, fmt.Errorf("decompress %s: output exceeds %d bytes: %w", m, maxOut, ErrTooLarge)
			}
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr != nil && m == None:
			return n, fmt.Errorf("decompress %s: read input: %w", m, rerr)
		case rerr != nil:
			return n, rerr
		}
	}
}
