package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll collects messages until the first error.
func readAll(r *Reader) (msgs []string, err error) {
	for {
		m, err := r.Next()
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, string(m))
	}
}

func TestReaderSplits(t *testing.T) {
	in := "\x00{\"a\":1}\x00\x00{\"b\":2}\x00{\"c\":3}\x00"
	want := []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}
	for name, r := range map[string]io.Reader{
		"one read":     strings.NewReader(in),
		"byte by byte": iotest.OneByteReader(strings.NewReader(in)),
		"data+EOF":     iotest.DataErrReader(strings.NewReader(in)),
	} {
		got, err := readAll(NewReader(r, 100))
		if err != io.EOF {
			t.Errorf("%s: err %v, want io.EOF", name, err)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q", name, got)
		}
	}
}

func TestReaderTooLarge(t *testing.T) {
	big := strings.Repeat("x", 25)
	r := NewReader(iotest.HalfReader(strings.NewReader("short\x00"+big+"\x00next\x00")), 10)
	if m, err := r.Next(); err != nil || string(m) != "short" {
		t.Fatalf("%q %v", m, err)
	}
	_, err := r.Next()
	if !errors.Is(err, ErrTooLarge) || err.Error() != "protocol: message of 25 bytes exceeds the 10-byte limit; skipped: message too large" {
		t.Fatalf("err = %v", err)
	}
	// The reader resynchronises at the NUL after the oversized message.
	if m, err := r.Next(); err != nil || string(m) != "next" {
		t.Fatalf("after oversize: %q %v", m, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("err = %v", err)
	}
	if cap(r.buf) > 11 {
		t.Errorf("buffer grew to %d bytes for a 10-byte limit", cap(r.buf))
	}
}

func TestReaderExactLimit(t *testing.T) {
	r := NewReader(strings.NewReader("0123456789\x0001234567890\x00"), 10)
	if m, err := r.Next(); err != nil || string(m) != "0123456789" {
		t.Fatalf("%q %v", m, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("11 bytes: %v", err)
	}
}

// TestReaderHugeStream feeds 64 MiB without a NUL: the reader must report
// it without holding more than its limit.
func TestReaderHugeStream(t *testing.T) {
	src := io.MultiReader(io.LimitReader(zeroFree{}, 64<<20), strings.NewReader("\x00ok\x00"))
	r := NewReader(src, 1<<10)
	_, err := r.Next()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "message of 67108864 bytes exceeds the 1024-byte limit") {
		t.Fatalf("err = %v", err)
	}
	if cap(r.buf) > 1<<10+1 {
		t.Errorf("buffer %d bytes", cap(r.buf))
	}
	if m, err := r.Next(); err != nil || string(m) != "ok" {
		t.Fatalf("%q %v", m, err)
	}
}

type zeroFree struct{}

func (zeroFree) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestReaderEndings(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		msgs int
		is   error
		text string
	}{
		{"", 10, 0, io.EOF, "EOF"},
		{"{}\x00", 10, 1, io.EOF, "EOF"},
		{"{}\x00{\"a\"", 10, 1, io.ErrUnexpectedEOF, "protocol: stream ended inside a message (4 bytes without NUL terminator): unexpected EOF"},
		{"{}\x00" + strings.Repeat("y", 20), 10, 1, ErrTooLarge, "protocol: message of at least 20 bytes exceeds the 10-byte limit, and the stream ended inside it (unexpected EOF): message too large"},
	}
	for _, tc := range tests {
		msgs, err := readAll(NewReader(strings.NewReader(tc.in), tc.max))
		if len(msgs) != tc.msgs || !errors.Is(err, tc.is) || err.Error() != tc.text {
			t.Errorf("%q: %d msgs, err %v; want %d, %q", tc.in, len(msgs), err, tc.msgs, tc.text)
		}
	}
	// The oversize-at-EOF error also says the stream ended early.
	_, err := readAll(NewReader(strings.NewReader(strings.Repeat("y", 20)), 10))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err %v does not wrap io.ErrUnexpectedEOF", err)
	}
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("{}\x00"), iotest.ErrReader(boom)), 10)
	msgs, err := readAll(r)
	if len(msgs) != 1 || err != boom {
		t.Fatalf("%q %v", msgs, err)
	}
	if _, err := r.Next(); err != boom {
		t.Fatalf("error not sticky: %v", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	_, err := NewReader(emptyReader{}, 10).Next()
	if err != io.ErrNoProgress {
		t.Fatalf("err = %v", err)
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteMessage([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessage([]byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "{\"a\":1}\x00{}\x00" {
		t.Fatalf("%q", buf.String())
	}
	err := w.WriteMessage([]byte("{\x00}"))
	if !errors.Is(err, ErrNUL) || err.Error() != "protocol: write message: NUL at byte 1 of 3: message contains a NUL byte" {
		t.Fatalf("err = %v", err)
	}
	if buf.Len() != 11 {
		t.Error("a refused message was written")
	}
	if got := AppendFrame([]byte("x"), []byte("{}")); string(got) != "x{}\x00" {
		t.Errorf("%q", got)
	}
	failing := NewWriter(errWriter{})
	if err := failing.WriteMessage([]byte("{}")); err == nil || !strings.Contains(err.Error(), "protocol: write message: disk full") {
		t.Errorf("err = %v", err)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// With FailOnTooLarge the reader stops at the limit instead of reading an
// oversize message to its end, and stays failed.
func TestReaderFailOnTooLarge(t *testing.T) {
	src := &countingReader{r: strings.NewReader(strings.Repeat("x", 1<<20) + "\x00{}\x00")}
	r := NewReader(src, 1000)
	r.FailOnTooLarge()
	for range 2 {
		if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	}
	if src.n > 16<<10 {
		t.Errorf("read %d bytes of a message over a 1000-byte limit", src.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// The buffer grown for one large message is not kept for the small ones
// after it.
func TestReaderReleasesLargeBuffer(t *testing.T) {
	big := strings.Repeat("b", 200<<10)
	r := NewReader(strings.NewReader(big+"\x00{}\x00{}\x00"), 1<<20)
	for _, want := range []int{len(big), 2, 2} {
		m, err := r.Next()
		if err != nil || len(m) != want {
			t.Fatalf("message of %d bytes, err %v; want %d bytes", len(m), err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if cap(r.buf) > keepBuffer {
		t.Errorf("reader keeps a %d-byte buffer after a %d-byte message", cap(r.buf), len(big))
	}
}
