package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMessageSize is the message size limit NewReader uses when given
// a limit <= 0. The C++ library has no limit (§1.3); a node-sync for a
// 100-node mesh is a few KB and an OTA chunk about 1.5 KB.
const DefaultMaxMessageSize = 1 << 20

// ErrTooLarge is wrapped by the error Reader.Next returns for a message
// longer than the reader's limit. The reader skips that message and can be
// used again.
var ErrTooLarge = errors.New("message too large")

// ErrNUL is returned when asked to frame a message that contains a NUL
// byte, which would end the frame early on the receiving side.
var ErrNUL = errors.New("message contains a NUL byte")

const readChunk = 4096

// Reader splits a byte stream into NUL-terminated messages (§1.2). It
// never holds more than maxSize+1 bytes of one message.
type Reader struct {
	r          io.Reader
	max        int
	buf        []byte
	start      int // first unread byte
	scan       int // bytes in [start, scan) hold no NUL
	end        int // end of buffered data
	err        error
	emptyReads int
	failLarge  bool
}

// keepBuffer is the largest buffer a Reader or Writer keeps once the
// message that needed more has passed, so that one large message does not
// cost its size for the rest of a connection's life.
const keepBuffer = 16 << 10

// FailOnTooLarge makes Next return the ErrTooLarge error as soon as a
// message passes the limit, without reading on to its end; the caller
// closes the stream. By default the message is read to its NUL and
// skipped, however long it is.
func (r *Reader) FailOnTooLarge() { r.failLarge = true }

// NewReader returns a Reader that reads messages of at most maxSize bytes
// (DefaultMaxMessageSize if maxSize <= 0) from r.
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &Reader{r: r, max: maxSize}
}

// Next returns the next message without its NUL terminator. Empty frames
// (consecutive NULs) are skipped. The returned slice is valid only until
// the next call.
//
// A message longer than the limit is read to its NUL and dropped without
// being buffered; Next then returns an error wrapping ErrTooLarge and the
// following call continues with the next message. At the end of the stream
// Next returns io.EOF, or an error wrapping io.ErrUnexpectedEOF if the
// stream ended inside a message. Other read errors are returned as they are.
func (r *Reader) Next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(r.buf[r.scan:r.end], 0); i >= 0 {
			msgEnd := r.scan + i
			msg := r.buf[r.start:msgEnd]
			r.start, r.scan = msgEnd+1, msgEnd+1
			if len(msg) == 0 {
				continue
			}
			return msg, nil
		}
		r.scan = r.end
		if r.end-r.start > r.max {
			if r.failLarge {
				r.buf, r.start, r.scan, r.end = nil, 0, 0, 0
				r.err = fmt.Errorf("protocol: message of more than %d bytes exceeds the limit: %w", r.max, ErrTooLarge)
				return nil, r.err
			}
			return nil, r.skipLarge()
		}
		if r.err != nil {
			return nil, r.finish()
		}
		r.fill()
	}
}

// fill reads more data, compacting or growing the buffer as needed.
func (r *Reader) fill() {
	if pending := r.end - r.start; len(r.buf) > keepBuffer && pending <= keepBuffer/2 {
		// A large message has passed: do not keep its buffer.
		nb := make([]byte, max(readChunk, 2*pending))
		copy(nb, r.buf[r.start:r.end])
		r.buf = nb
		r.scan -= r.start
		r.start, r.end = 0, pending
	} else if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.scan -= r.start
		r.start, r.end = 0, n
	}
	if r.end == len(r.buf) {
		size := 2 * len(r.buf)
		if size < readChunk {
			size = readChunk
		}
		if size > r.max+1 {
			size = r.max + 1
		}
		if size <= len(r.buf) { // cannot happen: end-start <= max was checked
			size = len(r.buf) + 1
		}
		nb := make([]byte, size)
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	n, err := r.r.Read(r.buf[r.end:])
	if n < 0 || n > len(r.buf)-r.end {
		err = fmt.Errorf("protocol: reader returned invalid count %d", n)
		n = 0
	}
	r.end += n
	if err != nil {
		r.err = err
	} else if n == 0 {
		// io.Reader allows (0, nil); retry, but give up with
		// io.ErrNoProgress rather than spin forever.
		r.emptyReads++
		if r.emptyReads > 100 {
			r.err = io.ErrNoProgress
		}
		return
	}
	r.emptyReads = 0
}

// finish reports the sticky read error once the buffer holds no more
// complete messages.
func (r *Reader) finish() error {
	pending := r.end - r.start
	r.start, r.scan, r.end = 0, 0, 0
	if r.err == io.EOF && pending > 0 {
		return fmt.Errorf("protocol: stream ended inside a message (%d bytes without NUL terminator): %w", pending, io.ErrUnexpectedEOF)
	}
	return r.err
}

// skipLarge discards the current oversized message up to and including
// its NUL, counting its length.
func (r *Reader) skipLarge() error {
	size := r.end - r.start
	r.start, r.scan, r.end = 0, 0, 0
	for {
		if r.err != nil {
			err := r.err
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("protocol: message of at least %d bytes exceeds the %d-byte limit, and the stream ended inside it (%w): %w", size, r.max, err, ErrTooLarge)
		}
		r.fill()
		if i := bytes.IndexByte(r.buf[:r.end], 0); i >= 0 {
			size += i
			r.start, r.scan = i+1, i+1
			return fmt.Errorf("protocol: message of %d bytes exceeds the %d-byte limit; skipped: %w", size, r.max, ErrTooLarge)
		}
		size += r.end
		r.end = 0
	}
}

// Writer writes NUL-terminated messages.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer framing messages onto w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteMessage writes msg followed by a NUL byte in a single Write call.
// A message containing a NUL byte is refused with an error wrapping ErrNUL.
func (w *Writer) WriteMessage(msg []byte) error {
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		return fmt.Errorf("protocol: write message: NUL at byte %d of %d: %w", i, len(msg), ErrNUL)
	}
	w.buf = AppendFrame(w.buf[:0], msg)
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > keepBuffer {
		w.buf = nil // do not keep a large buffer after one big message
	}
	if err != nil {
		return fmt.Errorf("protocol: write message: %w", err)
	}
	return nil
}

// AppendFrame appends msg and its NUL terminator to dst. msg must not
// contain a NUL byte; the encoders in this package never produce one.
func AppendFrame(dst, msg []byte) []byte {
	dst = append(dst, msg...)
	return append(dst, 0)
}
