package capture

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/protocol"
)

const captures = "../testdata/painlessmesh"

// proxyCaptures lists the proxy recordings (not the *_events files, which
// are node callback logs in another format).
func proxyCaptures(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(captures, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range all {
		if !strings.HasSuffix(p, "_events.jsonl") {
			out = append(out, p)
		}
	}
	if len(out) != 7 {
		t.Fatalf("found %d proxy captures, want 7: %v", len(out), out)
	}
	return out
}

func TestReadFileJSONL(t *testing.T) {
	for _, path := range proxyCaptures(t) {
		recs, err := ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(string(raw), "\n")
		if len(recs) != lines {
			t.Errorf("%s: %d records for %d lines", path, len(recs), lines)
		}
		events := 0
		for _, r := range recs {
			if !r.IsMessage() {
				events++
				if r.Event != EventClosed {
					t.Errorf("%s: event %q", path, r.Event)
				}
			} else if r.Dir != ClientToServer && r.Dir != ServerToClient {
				t.Errorf("%s: direction %q", path, r.Dir)
			}
		}
		// Each capture ends with both directions of its one connection closing.
		if events != 2 {
			t.Errorf("%s: %d events, want 2", path, events)
		}
	}
}

// TestWriterReproducesCaptures writes the records read from each capture
// and gets the reference file back byte for byte.
func TestWriterReproducesCaptures(t *testing.T) {
	for _, path := range proxyCaptures(t) {
		recs, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		want, _ := os.ReadFile(path)
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: written capture differs from the original", path)
		}
	}
}

func TestWriterInvalidUTF8(t *testing.T) {
	in := []Record{
		{T: 1.5, Conn: 2, Dir: ServerToClient, Msg: "{\"type\":8,\"msg\":\"\xff\xfe\"}"},
		{T: 2, Conn: 2, Dir: ServerToClient, Msg: "tab\there \"quoted\" \x01 ünïcode"},
		{T: 3, Conn: 2, Dir: ServerToClient, Event: EventClosed},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(buf.String(), `"msg_b64": `) {
		t.Errorf("invalid UTF-8 not stored as msg_b64:\n%s", buf.String())
	}
	got, err := ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("round trip:\n got %q\nwant %q", got, in)
	}
}

func TestWriterRejectsNaNTime(t *testing.T) {
	var buf bytes.Buffer
	zero := 0.0
	err := NewWriter(&buf).Write(Record{T: zero / zero, Msg: "{}"})
	if err == nil || buf.Len() != 0 {
		t.Fatalf("err = %v, wrote %q", err, buf.String())
	}
}

// messages returns (conn, dir, msg) of the message records.
func messages(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.IsMessage() {
			out = append(out, Record{Conn: r.Conn, Dir: r.Dir, Msg: r.Msg})
		}
	}
	return out
}

// TestReadFileRaw reads the raw-bytes recording of scenario a and checks
// it holds the same messages, in the same order, as its JSONL capture.
func TestReadFileRaw(t *testing.T) {
	raw, err := ReadFile(filepath.Join(captures, "a_two_nodes_idle.raw"))
	if err != nil {
		t.Fatal(err)
	}
	jl, err := ReadFile(filepath.Join(captures, "a_two_nodes_idle.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got, want := messages(raw), messages(jl)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("raw: %d messages, jsonl: %d", len(got), len(want))
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("raw and jsonl messages differ")
	}
	if raw[0].T <= 0 {
		t.Errorf("raw record time %v not taken from the header", raw[0].T)
	}
}

// TestRawReassembly splits messages across chunks and puts several in one.
func TestRawReassembly(t *testing.T) {
	in := "\n#1 client->server 0.5 9\n{\"a\":1}\x00{" +
		"\n#1 server->client 0.6 8\n{\"b\":2}\x00" +
		"\n#1 client->server 0.7 9\n\"c\":3}\x00\x00\x00" +
		"\n#2 client->server 0.8 0\n"
	r := NewReader(strings.NewReader(in))
	var got []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if r.Format() != FormatRaw {
		t.Errorf("format %v", r.Format())
	}
	want := []Record{
		{T: 0.5, Conn: 1, Dir: ClientToServer, Msg: `{"a":1}`},
		{T: 0.6, Conn: 1, Dir: ServerToClient, Msg: `{"b":2}`},
		{T: 0.7, Conn: 1, Dir: ClientToServer, Msg: `{"c":3}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestReadFramed(t *testing.T) {
	jl, err := ReadFile(filepath.Join(captures, "b_chain_AB.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	var want []Record
	for _, r := range jl {
		if r.IsMessage() && r.Dir == ClientToServer {
			stream = protocol.AppendFrame(stream, []byte(r.Msg))
			want = append(want, Record{Msg: r.Msg})
		}
	}
	path := filepath.Join(t.TempDir(), "stream.bin")
	if err := os.WriteFile(path, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("framed: got %d records, want %d", len(got), len(want))
	}
}

// TestReadErrors shows the errors users see for files that are not
// captures or are damaged. Records before the damage are still returned.
func TestReadErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantRecs int
		is       error
		contains string
	}{
		{"callback log", "\nsetLogLevel: ERROR |\n", 0, ErrFormat, "line 2: not a capture"},
		{"missing keys", `{"t": 1, "msg": "{}"}` + "\n", 0, ErrFormat, `lacks one of "t", "conn", "dir"`},
		{"msg and event", `{"t": 1, "conn": 1, "dir": "client->server", "msg": "{}", "event": "closed"}` + "\n", 0, ErrFormat, "exactly one of"},
		{"bad base64", `{"t": 1, "conn": 1, "dir": "x", "msg_b64": "!!"}` + "\n", 0, ErrFormat, "msg_b64"},
		{"good then broken", `{"t": 1, "conn": 1, "dir": "x", "msg": "{}"}` + "\n{\"t\": 2,\n", 1, ErrFormat, "line 2"},
		{"raw bad header", "\n#1 client->server 0.5\n{}\x00", 0, ErrFormat, `is not "#<conn> <dir> <t> <count>"`},
		{"raw bad number", "\n#x client->server 0.5 3\n{}\x00", 0, ErrFormat, "bad number in header"},
		{"raw short chunk", "\n#1 client->server 0.5 30\n{}\x00", 1, io.ErrUnexpectedEOF, "header announces 30 bytes, file ends after 3"},
		{"raw garbage between chunks", "\n#1 client->server 0.5 3\n{}\x00junk", 1, ErrFormat, "expected a '#' header"},
		{"raw ends inside message", "\n#1 client->server 0.5 7\n{}\x00{\"a\"", 1, io.ErrUnexpectedEOF, "conn 1 client->server: stream ends inside a message (4 bytes"},
		{"framed ends inside message", "{}\x00{\"a\"", 1, io.ErrUnexpectedEOF, "stream ended inside a message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ReadAll(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error; records %+v", recs)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q, want %v containing %q", err, tc.is, tc.contains)
			}
			if len(recs) != tc.wantRecs {
				t.Errorf("%d records before the error, want %d", len(recs), tc.wantRecs)
			}
		})
	}
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope.jsonl"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadEmpty(t *testing.T) {
	recs, err := ReadAll(strings.NewReader(""))
	if err != nil || len(recs) != 0 {
		t.Fatalf("recs %v err %v", recs, err)
	}
}

func TestInspectCaptures(t *testing.T) {
	total := Report{ByType: map[int]int{}}
	for _, path := range proxyCaptures(t) {
		recs, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rep := Inspect(recs)
		if len(rep.Errors) != 0 {
			t.Errorf("%s: %v", path, rep.Errors)
		}
		if rep.Messages != rep.Decoded || rep.Decoded != rep.Typed || rep.Typed != rep.RoundtripIdentical {
			t.Errorf("%s: %+v", path, rep)
		}
		if rep.Events != 2 || rep.Records != rep.Events+rep.Messages {
			t.Errorf("%s: records %d events %d messages %d", path, rep.Records, rep.Events, rep.Messages)
		}
		total.Messages += rep.Messages
		for k, v := range rep.ByType {
			total.ByType[k] += v
		}
	}
	// Counted independently with grep over the reference files.
	want := map[int]int{4: 447, 5: 23, 6: 23, 8: 16, 9: 20, 10: 19, 11: 80, 12: 100}
	if !reflect.DeepEqual(total.ByType, want) || total.Messages != 728 {
		t.Errorf("messages %d by type %v, want 728 %v", total.Messages, total.ByType, want)
	}
}

func TestInspectProblems(t *testing.T) {
	recs := []Record{
		{Conn: 1, Dir: ClientToServer, Msg: `{"type":8,"dest":0,"from":1,"msg":"{\"type\":200,\"routing\":2,\"from\":1}"}`},
		{Conn: 1, Dir: ClientToServer, Msg: `{"type":8, "dest":0,"from":1,"msg":"hi"}`}, // space: re-encodes differently
		{Conn: 1, Dir: ClientToServer, Msg: `{"type":8`},                                // invalid JSON
		{Conn: 1, Dir: ClientToServer, Msg: `{"type":21,"routing":0,"x":1}`},            // unknown type
		{Conn: 1, Dir: ClientToServer, Event: EventClosed},
	}
	rep := Inspect(recs)
	if rep.Records != 5 || rep.Events != 1 || rep.Messages != 4 || rep.Decoded != 3 || rep.Typed != 2 || rep.Unknown != 1 || rep.RoundtripIdentical != 1 {
		t.Errorf("%+v", rep)
	}
	if rep.Wrapped[200] != 1 || rep.ByType[8] != 2 || rep.ByType[21] != 1 {
		t.Errorf("wrapped %v by type %v", rep.Wrapped, rep.ByType)
	}
	if len(rep.Errors) != 2 ||
		!strings.Contains(rep.Errors[0], "record 2 (conn 1 client->server t=0.000000): type 8 re-encodes differently") ||
		!strings.Contains(rep.Errors[1], "record 3 (conn 1 client->server t=0.000000): protocol: decode: invalid JSON") {
		t.Errorf("errors: %q", rep.Errors)
	}
}

func TestInspectCapsErrors(t *testing.T) {
	recs := make([]Record, 250)
	for i := range recs {
		recs[i] = Record{Msg: "not json"}
	}
	rep := Inspect(recs)
	if len(rep.Errors) != MaxReportErrors || rep.Errors[MaxReportErrors-1] != "... and 151 more problems" {
		t.Errorf("%d errors, last %q", len(rep.Errors), rep.Errors[len(rep.Errors)-1])
	}
}
