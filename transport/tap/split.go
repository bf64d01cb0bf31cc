package tap

import (
	"bytes"
	"errors"
	"io"
)

// splitter cuts a byte stream into NUL-terminated messages the way a stock
// receiver does (docs/protocol.md §1.2): empty frames are skipped, bytes after
// the last NUL wait for more input. It works on the tap's copy of the
// stream, so it never changes what is forwarded.
//
// protocol.Reader does the same for a node, but it pulls from an io.Reader;
// the tap must see each chunk before forwarding it, so it pushes instead.
type splitter struct {
	max      int
	buf      []byte
	overflow int // > 0: inside a message longer than max, bytes seen so far
}

// feed consumes chunk, calling msg for each complete message and tooLong
// (with the message's size) for each message longer than max.
func (s *splitter) feed(chunk []byte, msg func([]byte), tooLong func(int)) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, 0)
		part := chunk
		if i >= 0 {
			part = chunk[:i]
			chunk = chunk[i+1:]
		} else {
			chunk = nil
		}
		switch {
		case s.overflow > 0:
			s.overflow += len(part)
		case len(s.buf)+len(part) > s.max:
			s.overflow = len(s.buf) + len(part)
			s.buf = s.buf[:0]
		default:
			s.buf = append(s.buf, part...)
		}
		if i < 0 {
			return
		}
		switch {
		case s.overflow > 0:
			tooLong(s.overflow)
			s.overflow = 0
		case len(s.buf) > 0:
			msg(s.buf)
			s.buf = s.buf[:0]
		}
	}
}

// pending is the number of bytes seen since the last NUL.
func (s *splitter) pending() int { return len(s.buf) + s.overflow }

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
