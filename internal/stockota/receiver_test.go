package stockota

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// recordingHost is the part of a node the receiver uses: its id and the
// packages it sends.
type recordingHost struct {
	mesh.Host
	id   uint32
	sent []protocol.Package
}

func (h *recordingHost) ID() uint32 { return h.id }

func (h *recordingHost) SendPackage(_ time.Time, p protocol.Package) error {
	h.sent = append(h.sent, p)
	return nil
}

// deliver hands p to the receiver as the node would: encoded on the wire.
func deliver(t *testing.T, r *Receiver, p protocol.Package) {
	t.Helper()
	raw := protocol.Encode(p)
	h, err := protocol.ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	r.HandlePackage(epoch, 1, h, raw)
}

// Every chunk decodes as the C++ library decodes it: for each of the 100
// inputs of its lenient base64 decoder (standard, unpadded, URL-safe,
// stray characters), a one-chunk transfer carrying that text installs
// exactly the bytes the library produced, and asks in its own name for
// the chunk it lacks.
func TestReceiverDecodesChunksAsTheLibrary(t *testing.T) {
	f, err := os.Open("../../testdata/conformance/base64_decode.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v struct {
			In     string
			OutHex string `json:"out_hex"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		n++
		want, err := hex.DecodeString(v.OutHex)
		if err != nil {
			t.Fatal(err)
		}
		host := &recordingHost{id: 7}
		r := &Receiver{Role: "sensor", Hardware: "ESP32"}
		r.Attach(host)
		a := protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: md5hex(want), Hardware: "ESP32", Role: "sensor", NoPart: 1}
		deliver(t, r, &a)
		if len(host.sent) != 1 {
			t.Fatalf("vector %d: %d requests after the announce", n, len(host.sent))
		}
		req, ok := host.sent[0].(*protocol.DataRequest)
		if !ok || req.From != 7 || req.Dest != 1 || req.PartNo != 0 || req.Routing != protocol.RouteSingle || req.MD5 != a.MD5 {
			t.Fatalf("vector %d: request %+v", n, host.sent[0])
		}
		d := protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: 7}, Base64: v.In}
		d.From, d.Routing = 1, protocol.RouteSingle
		deliver(t, r, &d)
		if r.Installed != a.MD5 || !bytes.Equal(r.Image, want) {
			t.Errorf("vector %d: %q installed %q = %x, want %s", n, v.In, r.Installed, r.Image, v.OutHex)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Errorf("read %d vectors, want 100", n)
	}
}

// The facts stock-turbo relies on (ota.hpp, addReceivePackageCallback;
// docs/protocol.md §8.4–8.5): after an Announce with broadcasted:true a
// non-root receiver sends nothing and writes in-sequence Data whoever it
// is addressed to; the first out-of-sequence broadcasted Data makes it ask
// for the missing chunk at once, in the Data's dest's name, then every
// 30 s, ten times; then it forgets the md5 until the next Announce and
// resumes from the chunk it had.
func TestReceiverBroadcastFacts(t *testing.T) {
	h := &recordingHost{id: 7}
	r := &Receiver{Role: "r", Hardware: "ESP8266"}
	r.Attach(h)
	a := protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: "m", Role: "r", Hardware: "ESP8266", NoPart: 4, Broadcasted: true}
	deliver(t, r, &a)
	if len(h.sent) != 0 {
		t.Fatalf("a non-root receiver asked after a broadcasted announce: %v", h.sent)
	}
	data := func(part uint32, bcast bool) *protocol.Data {
		d := &protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: 1, PartNo: part}, Base64: "AAAA"}
		d.Routing, d.From, d.Broadcasted = protocol.RouteBroadcast, 1, bcast
		return d
	}
	deliver(t, r, data(0, true))
	deliver(t, r, data(2, false)) // out of sequence, not broadcasted: ignored
	if r.PartsReceived() != 1 || len(h.sent) != 0 {
		t.Fatalf("parts %d, sent %v", r.PartsReceived(), h.sent)
	}
	deliver(t, r, data(2, true))
	if len(h.sent) != 1 {
		t.Fatalf("out-of-sequence broadcasted data: %d requests, want 1 at once", len(h.sent))
	}
	q := h.sent[0].(*protocol.DataRequest)
	if q.PartNo != 1 || q.From != 1 || q.Dest != 1 || q.Broadcasted {
		t.Fatalf("request %+v: want part 1 from the Data's dest, not broadcasted", q)
	}
	now := epoch
	for range 12 {
		now = now.Add(30 * time.Second)
		r.Tick(now)
	}
	if len(h.sent) != 10 || r.update.md5 != "" {
		t.Fatalf("%d requests, md5 %q: want 10 then forgotten", len(h.sent), r.update.md5)
	}
	a.Broadcasted = false
	deliver(t, r, &a)
	if q := h.sent[len(h.sent)-1].(*protocol.DataRequest); len(h.sent) != 11 || q.PartNo != 1 || q.From != 7 {
		t.Fatalf("after the next announce: %d requests, last %+v; want part 1 in its own name", len(h.sent), q)
	}
}

// A node that restarts (the mesh boots its plugins again) has lost the
// transfer it held in RAM, as the C++ node after ESP.restart: it starts
// from chunk 0 on the next Announce and keeps its installed image.
func TestReceiverRestartForgetsTransfer(t *testing.T) {
	h := &recordingHost{id: 7}
	r := &Receiver{Role: "r", Hardware: "ESP8266", Installed: "old"}
	r.Attach(h)
	a := protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: "m", Role: "r", Hardware: "ESP8266", NoPart: 4}
	deliver(t, r, &a)
	d := &protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: 7}, Base64: "AAAA"}
	d.From = 1
	deliver(t, r, d)
	if r.PartsReceived() != 1 {
		t.Fatalf("parts %d", r.PartsReceived())
	}
	r.Attach(h) // the restart
	if r.PartsReceived() != 0 || r.NextDeadline() != (time.Time{}) || r.Installed != "old" {
		t.Fatalf("after restart: parts %d, deadline %v, installed %q", r.PartsReceived(), r.NextDeadline(), r.Installed)
	}
	deliver(t, r, &a)
	if q := h.sent[len(h.sent)-1].(*protocol.DataRequest); q.PartNo != 0 {
		t.Fatalf("after restart and announce, asks for part %d, want 0", q.PartNo)
	}
}

// A receiver that dropped out of broadcast mode keeps its request task
// for the rest of its boot, even after the task ran out (ota.hpp keeps
// updateFW->task, disabled, and restarts it on every in-sequence chunk):
// after a later Announce with broadcasted:true it is silent until the
// next chunk it writes, then asks for the one after in the Data's dest's
// name, as in request mode.
func TestReceiverKeepsRequestModeAfterItsTaskRanOut(t *testing.T) {
	h := &recordingHost{id: 7}
	r := &Receiver{Role: "r", Hardware: "ESP8266"}
	r.Attach(h)
	a := protocol.Announce{From: 1, Routing: protocol.RouteBroadcast, MD5: "m", Role: "r", Hardware: "ESP8266", NoPart: 4, Broadcasted: true}
	deliver(t, r, &a)
	data := func(part uint32, bcast bool) *protocol.Data {
		d := &protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: 9, PartNo: part}, Base64: "AAAA"}
		d.Routing, d.From, d.Broadcasted = protocol.RouteBroadcast, 1, bcast
		return d
	}
	deliver(t, r, data(0, true))
	deliver(t, r, data(2, true)) // drops out, asks for 1
	now := epoch
	for range 12 {
		now = now.Add(30 * time.Second)
		r.Tick(now)
	}
	if len(h.sent) != 10 || r.update.md5 != "" {
		t.Fatalf("%d requests, md5 %q: want 10 then forgotten", len(h.sent), r.update.md5)
	}
	deliver(t, r, &a) // broadcasted:true again: no request now
	if len(h.sent) != 10 {
		t.Fatalf("a broadcasted announce made it ask: %d requests", len(h.sent))
	}
	deliver(t, r, data(1, true))
	if r.PartsReceived() != 2 || len(h.sent) != 11 {
		t.Fatalf("parts %d, %d requests: want chunk 1 written and one request for chunk 2", r.PartsReceived(), len(h.sent))
	}
	if q := h.sent[10].(*protocol.DataRequest); q.PartNo != 2 || q.From != 9 {
		t.Fatalf("request %+v: want part 2 in the Data's dest's name", q)
	}
}
