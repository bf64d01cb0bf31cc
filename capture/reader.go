package capture

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/meshfleet/meshfleet/protocol"
)

// Format is a capture file format.
type Format int

// Formats ReadFile and Reader detect.
const (
	FormatJSONL  Format = iota + 1 // one JSON record per line
	FormatRaw                      // "#conn dir t count" headers before raw chunks
	FormatFramed                   // a bare NUL-framed byte stream
)

func (f Format) String() string {
	switch f {
	case FormatJSONL:
		return "jsonl"
	case FormatRaw:
		return "raw"
	case FormatFramed:
		return "nul-framed"
	}
	return "unknown"
}

// MaxMessageSize bounds one message in any format; longer messages are an
// error (the reader never buffers more than this per stream).
const MaxMessageSize = protocol.DefaultMaxMessageSize

// maxLine bounds a JSONL line: a message of MaxMessageSize bytes escaped
// as \u00XX throughout, plus the record's other keys.
const maxLine = 6*MaxMessageSize + 4096

// ReadFile reads a whole capture file, detecting its format. On error it
// returns the records read before the error as well.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	recs, err := ReadAll(f)
	if err != nil {
		return recs, fmt.Errorf("capture: %s: %w", path, err)
	}
	return recs, nil
}

// ReadAll reads every record from r, detecting the format. On error it
// returns the records read before the error as well.
func ReadAll(r io.Reader) ([]Record, error) {
	cr := NewReader(r)
	var out []Record
	for {
		rec, err := cr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// Reader reads records one at a time from a capture in any format.
type Reader struct {
	br     *bufio.Reader
	format Format
	err    error // sticky

	// JSONL
	line int

	// raw: per-stream reassembly, and records completed by the last chunk
	streams map[streamKey]*bytes.Buffer
	order   []streamKey // first-seen order, for deterministic EOF errors
	ready   []Record
	rawErr  error
	chunk   int

	// framed
	framed *protocol.Reader
}

type streamKey struct {
	conn int
	dir  string
}

// NewReader returns a Reader for r. The format is detected from the first
// bytes: '#' starts a raw file; otherwise a NUL byte within the first
// line means a NUL-framed stream; anything else is read as JSONL.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Format returns the detected format (0 before the first call to Next).
func (r *Reader) Format() Format { return r.format }

// Next returns the next record, or io.EOF after the last one.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.format == 0 {
		f, err := r.detect()
		if err != nil {
			r.err = err
			return Record{}, err
		}
		r.format = f
	}
	var rec Record
	var err error
	switch r.format {
	case FormatJSONL:
		rec, err = r.nextJSONL()
	case FormatRaw:
		rec, err = r.nextRaw()
	default:
		rec, err = r.nextFramed()
	}
	if err != nil {
		r.err = err
	}
	return rec, err
}

func (r *Reader) detect() (Format, error) {
	for {
		b, err := r.br.Peek(1)
		if err == io.EOF {
			return FormatJSONL, nil // empty input: no records
		}
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case '\n', '\r', ' ', '\t':
			// Raw files start with a newline before the first header;
			// JSONL may have blank lines. Look past whitespace.
			if _, err := r.br.ReadByte(); err != nil {
				return 0, err
			}
			if b[0] == '\n' {
				r.line++
			}
			continue
		case '#':
			return FormatRaw, nil
		}
		peek, _ := r.br.Peek(r.br.Size())
		if nl := bytes.IndexByte(peek, '\n'); nl >= 0 {
			peek = peek[:nl]
		}
		if bytes.IndexByte(peek, 0) >= 0 {
			r.framed = protocol.NewReader(r.br, MaxMessageSize)
			return FormatFramed, nil
		}
		return FormatJSONL, nil
	}
}

// jsonRecord is the JSONL form; pointers tell missing keys from zero ones.
type jsonRecord struct {
	T      *float64 `json:"t"`
	Conn   *int     `json:"conn"`
	Dir    *string  `json:"dir"`
	Msg    *string  `json:"msg"`
	MsgB64 *string  `json:"msg_b64"`
	Event  *string  `json:"event"`
}

func (r *Reader) nextJSONL() (Record, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Record{}, err
		}
		r.line++
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var jr jsonRecord
		if err := json.Unmarshal(line, &jr); err != nil {
			return Record{}, fmt.Errorf("line %d: %w: %v (starts %q)", r.line, ErrFormat, err, head(line))
		}
		rec, err := jr.record()
		if err != nil {
			return Record{}, fmt.Errorf("line %d: %w: %v", r.line, ErrFormat, err)
		}
		return rec, nil
	}
}

// readLine reads one line without its newline, refusing lines longer
// than maxLine without buffering them.
func (r *Reader) readLine() ([]byte, error) {
	var buf []byte
	for {
		part, err := r.br.ReadSlice('\n')
		if len(buf)+len(part) > maxLine {
			return nil, fmt.Errorf("line %d: %w: longer than %d bytes", r.line+1, ErrFormat, maxLine)
		}
		buf = append(buf, part...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}

func (jr *jsonRecord) record() (Record, error) {
	if jr.T == nil || jr.Conn == nil || jr.Dir == nil {
		return Record{}, errors.New(`record lacks one of "t", "conn", "dir"`)
	}
	rec := Record{T: *jr.T, Conn: *jr.Conn, Dir: *jr.Dir}
	n := 0
	if jr.Msg != nil {
		rec.Msg = *jr.Msg
		n++
	}
	if jr.MsgB64 != nil {
		b, err := base64.StdEncoding.DecodeString(*jr.MsgB64)
		if err != nil {
			return Record{}, fmt.Errorf("msg_b64: %v", err)
		}
		rec.Msg = string(b)
		n++
	}
	if jr.Event != nil {
		if *jr.Event == "" {
			return Record{}, errors.New(`empty "event"`)
		}
		rec.Event = *jr.Event
		n++
	}
	if n != 1 {
		return Record{}, errors.New(`record needs exactly one of "msg", "msg_b64", "event"`)
	}
	if len(rec.Msg) > MaxMessageSize {
		return Record{}, fmt.Errorf("message of %d bytes exceeds the %d-byte limit: %w", len(rec.Msg), MaxMessageSize, protocol.ErrTooLarge)
	}
	return rec, nil
}

func (r *Reader) nextRaw() (Record, error) {
	for len(r.ready) == 0 {
		if r.rawErr != nil {
			return Record{}, r.rawErr
		}
		// Messages a damaged chunk completed are delivered before its error.
		r.rawErr = r.readChunk()
	}
	rec := r.ready[0]
	r.ready = r.ready[1:]
	return rec, nil
}

// readChunk reads one "#conn dir t count" header and its bytes, queueing
// the messages they complete. At the end of the input it reports streams
// left inside a message.
func (r *Reader) readChunk() error {
	// Chunks are separated by newlines; skip them.
	for {
		b, err := r.br.ReadByte()
		if err == io.EOF {
			return r.rawEOF()
		}
		if err != nil {
			return err
		}
		if b == '\n' || b == '\r' {
			continue
		}
		if b != '#' {
			return fmt.Errorf("chunk %d: %w: expected a '#' header, found %q", r.chunk+1, ErrFormat, b)
		}
		break
	}
	r.chunk++
	hdr, err := r.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull || err == io.EOF {
			return fmt.Errorf("chunk %d: %w: unterminated header", r.chunk, ErrFormat)
		}
		return err
	}
	f := strings.Fields(string(hdr))
	if len(f) != 4 {
		return fmt.Errorf("chunk %d: %w: header %q is not \"#<conn> <dir> <t> <count>\"", r.chunk, ErrFormat, strings.TrimSpace(string(hdr)))
	}
	conn, err1 := strconv.Atoi(f[0])
	t, err2 := strconv.ParseFloat(f[2], 64)
	count, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || count < 0 {
		return fmt.Errorf("chunk %d: %w: bad number in header %q", r.chunk, ErrFormat, strings.TrimSpace(string(hdr)))
	}
	key := streamKey{conn: conn, dir: f[1]}
	if r.streams == nil {
		r.streams = map[streamKey]*bytes.Buffer{}
	}
	pending := r.streams[key]
	if pending == nil {
		pending = new(bytes.Buffer)
		r.streams[key] = pending
		r.order = append(r.order, key)
	}
	// Copy the chunk in pieces so a lying count cannot make us allocate.
	remaining := count
	for remaining > 0 {
		n := min(remaining, 32<<10)
		piece, err := r.br.Peek(n)
		got := len(piece)
		if got == 0 && err != nil {
			if err == io.EOF {
				return fmt.Errorf("chunk %d: %w: header announces %d bytes, file ends after %d", r.chunk, io.ErrUnexpectedEOF, count, count-remaining)
			}
			return err
		}
		for len(piece) > 0 {
			i := bytes.IndexByte(piece, 0)
			if i < 0 {
				pending.Write(piece)
				break
			}
			pending.Write(piece[:i])
			if pending.Len() > 0 {
				r.ready = append(r.ready, Record{T: t, Conn: conn, Dir: key.dir, Msg: pending.String()})
			}
			pending.Reset()
			piece = piece[i+1:]
		}
		if pending.Len() > MaxMessageSize {
			return fmt.Errorf("chunk %d: conn %d %s: message longer than %d bytes: %w", r.chunk, conn, key.dir, MaxMessageSize, protocol.ErrTooLarge)
		}
		if _, err := r.br.Discard(got); err != nil {
			return err
		}
		remaining -= got
	}
	return nil
}

func (r *Reader) rawEOF() error {
	for _, k := range r.order {
		if n := r.streams[k].Len(); n > 0 {
			return fmt.Errorf("conn %d %s: stream ends inside a message (%d bytes without NUL terminator): %w", k.conn, k.dir, n, io.ErrUnexpectedEOF)
		}
	}
	return io.EOF
}

func (r *Reader) nextFramed() (Record, error) {
	msg, err := r.framed.Next()
	if err != nil {
		return Record{}, err
	}
	return Record{Msg: string(msg)}, nil
}

func head(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
