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
