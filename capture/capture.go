// Package capture reads and writes recordings of painlessMesh traffic.
//
// Three file formats are understood (see testdata/painlessmesh/README.md):
//
//   - JSONL (what a tap proxy writes): one record per line,
//     {"t": seconds, "conn": N, "dir": "client->server", "msg": "<JSON text>"}
//     or {"t": ..., "conn": N, "dir": ..., "event": "closed"}. A message that
//     is not valid UTF-8 cannot be carried in a JSON string without loss, so
//     the Writer stores it as "msg_b64" (standard base64) instead, and the
//     readers accept that key.
//   - raw reads: before every chunk a header line "#<conn> <dir> <t> <count>",
//     then exactly count bytes as read from the socket; messages are split
//     at their NUL terminators per connection and direction.
//   - a plain NUL-framed byte stream (one direction of one connection).
//
// Inspect decodes every message with package protocol and reports how many
// decode and re-encode byte for byte.
package capture

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Directions as the capture format names them: the client is the node that
// connected (station side), the server the node that accepted (AP side).
const (
	ClientToServer = "client->server"
	ServerToClient = "server->client"
)

// EventClosed is the event of a record marking the end of one direction.
const EventClosed = "closed"

// Record is one message or event of a capture.
type Record struct {
	T     float64 // seconds since the recording started
	Conn  int     // connection number
	Dir   string  // ClientToServer or ServerToClient; "" when unknown
	Msg   string  // the message (JSON text, without its NUL) when Event is ""
	Event string  // non-empty for events, e.g. EventClosed
}

// IsMessage reports whether r is a message rather than an event.
func (r Record) IsMessage() bool { return r.Event == "" }

// String returns a short description for error messages and logs.
func (r Record) String() string {
	dir := r.Dir
	if dir == "" {
		dir = "?"
	}
	return fmt.Sprintf("conn %d %s t=%.6f", r.Conn, dir, r.T)
}

// ErrFormat is wrapped by errors about input that is not a capture.
var ErrFormat = errors.New("not a capture")

// Writer writes records as JSONL, one Write call per record, so a capture
// cut short still holds every complete line. It is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one record as a line.
func (w *Writer) Write(r Record) error {
	if math.IsNaN(r.T) || math.IsInf(r.T, 0) {
		return fmt.Errorf("capture: write record: time %v is not a finite number", r.T)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = AppendRecord(w.buf[:0], r)
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	if err != nil {
		return fmt.Errorf("capture: write record: %w", err)
	}
	return nil
}

// AppendRecord appends r as one JSONL line (with its newline), keys in the
// order t, conn, dir, msg|msg_b64|event, separated like the reference
// captures.
func AppendRecord(dst []byte, r Record) []byte {
	dst = append(dst, `{"t": `...)
	dst = strconv.AppendFloat(dst, r.T, 'f', -1, 64)
	dst = append(dst, `, "conn": `...)
	dst = strconv.AppendInt(dst, int64(r.Conn), 10)
	dst = append(dst, `, "dir": `...)
	dst = appendJSONString(dst, r.Dir)
	switch {
	case r.Event != "":
		dst = append(dst, `, "event": `...)
		dst = appendJSONString(dst, r.Event)
	case utf8.ValidString(r.Msg):
		dst = append(dst, `, "msg": `...)
		dst = appendJSONString(dst, r.Msg)
	default:
		dst = append(dst, `, "msg_b64": "`...)
		dst = base64.StdEncoding.AppendEncode(dst, []byte(r.Msg))
		dst = append(dst, '"')
	}
	return append(dst, "}\n"...)
}

// appendJSONString writes a valid UTF-8 string as a JSON string: quotes,
// backslashes and control characters escaped, everything else as is.
// Invalid UTF-8 is replaced by U+FFFD; AppendRecord never passes any for
// messages.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
