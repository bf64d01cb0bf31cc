package ota

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/slot"
)

// fakeHost is a mesh.Host that records what a plugin sends.
type fakeHost struct {
	id     uint32
	tree   protocol.NodeTree
	sent   [][]byte
	events []mesh.Event
}

func (h *fakeHost) ID() uint32                                   { return h.id }
func (h *fakeHost) NodeTime(time.Time) uint32                    { return 0 }
func (h *fakeHost) NodeList(bool) []uint32                       { return nil }
func (h *fakeHost) Tree() protocol.NodeTree                      { return h.tree }
func (h *fakeHost) Emit(ev mesh.Event)                           { h.events = append(h.events, ev) }
func (h *fakeHost) Stats() mesh.Stats                            { return mesh.Stats{} }
func (h *fakeHost) StartDelayMeasurement(time.Time, uint32) bool { return false }
func (h *fakeHost) SendPackage(now time.Time, p protocol.Package) error {
	h.sent = append(h.sent, p.AppendJSON(nil))
	return nil
}
func (h *fakeHost) SendRaw(now time.Time, msg []byte) error {
	h.sent = append(h.sent, bytes.Clone(msg))
	return nil
}

// take returns and forgets the sent messages of type typ.
func (h *fakeHost) take(typ int) [][]byte {
	var out, rest [][]byte
	for _, m := range h.sent {
		hd, err := protocol.ParseHeader(m)
		if err == nil && hd.Type == typ {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	h.sent = rest
	return out
}

type captured struct {
	Dir string `json:"dir"`
	Msg string `json:"msg"`
}

// readCapture returns the OTA messages of a capture in order.
func readCapture(t *testing.T, name string) []captured {
	t.Helper()
	f, err := os.Open("../testdata/painlessmesh/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []captured
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c captured
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		if c.Msg == "" {
			continue
		}
		h, err := protocol.ParseHeader([]byte(c.Msg))
		if err != nil {
			t.Fatalf("capture line %q: %v", c.Msg, err)
		}
		if h.Type >= protocol.TypeOTAAnnounce && h.Type <= protocol.TypeOTAData {
			out = append(out, c)
		}
	}
	return out
}

func typeOf(t *testing.T, msg string) protocol.Header {
	h, err := protocol.ParseHeader([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestReplayDistributorAnswersStockReceiver feeds the DataRequests a stock
// receiver sent (capture c) to our distributor: the announce and every Data
// answer must be byte for byte what the C++ distributor sent.
func TestReplayDistributorAnswersStockReceiver(t *testing.T) {
	img, err := os.ReadFile("../testdata/painlessmesh/c_firmware.bin")
	if err != nil {
		t.Fatal(err)
	}
	msgs := readCapture(t, "c_ota_unicast.jsonl")
	h := &fakeHost{id: 500, tree: protocol.NodeTree{NodeID: 500, Subs: []protocol.NodeTree{{NodeID: 600}}}}
	d := NewDistributor(DistributorConfig{AnnounceInterval: 5 * time.Second})
	d.Attach(h)
	now := time.Unix(1000, 0)
	if _, err := d.Start(now, CampaignSpec{ID: "c", Image: Image{Role: "sensor", Hardware: "ESP32", Data: img}}); err != nil {
		t.Fatal(err)
	}
	ann := h.take(protocol.TypeOTAAnnounce)
	if len(ann) != 1 || string(ann[0]) != msgs[0].Msg {
		t.Fatalf("announce:\n got %s\nwant %s", ann, msgs[0].Msg)
	}
	answered := 0
	for i, m := range msgs {
		if typeOf(t, m.Msg).Type != protocol.TypeOTADataRequest {
			continue
		}
		now = now.Add(40 * time.Millisecond)
		d.HandlePackage(now, 1, typeOf(t, m.Msg), []byte(m.Msg))
		d.Tick(now)
		got := h.take(protocol.TypeOTAData)
		want := msgs[i+1].Msg
		if len(got) != 1 || string(got[0]) != want {
			t.Fatalf("answer to %s:\n got %q\nwant %q", m.Msg, got, want)
		}
		answered++
	}
	if answered != 20 {
		t.Fatalf("answered %d requests, want 20", answered)
	}
	// Q-19 f: a request for something not announced gets no answer.
	bad := bytes.Replace([]byte(msgs[1].Msg), []byte(`"role":"sensor"`), []byte(`"role":"other"`), 1)
	d.HandlePackage(now, 1, typeOf(t, string(bad)), bad)
	d.Tick(now.Add(time.Second))
	if got := h.take(protocol.TypeOTAData); len(got) != 0 || d.Stats().IgnoredRequests != 1 {
		t.Fatalf("unannounced request answered (%d) or not counted (%d)", len(got), d.Stats().IgnoredRequests)
	}
}

// TestReplayReceiverRebuildsFirmware feeds our receiver the announce and
// Data packages of capture c: it must ask for every part exactly as the
// C++ receiver did and install c_firmware.bin.
func TestReplayReceiverRebuildsFirmware(t *testing.T) {
	img, err := os.ReadFile("../testdata/painlessmesh/c_firmware.bin")
	if err != nil {
		t.Fatal(err)
	}
	const want = "efa6506336b817b6ac4387222da6b384"
	if md5hexOf(img) != want {
		t.Fatalf("c_firmware.bin md5 %s", md5hexOf(img))
	}
	mem := NewMemoryStore("")
	ss, err := slot.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]Store{"memory": mem, "slot": SlotStore(ss)} {
		t.Run(name, func(t *testing.T) {
			msgs := readCapture(t, "c_ota_unicast.jsonl")
			h := &fakeHost{id: 600, tree: protocol.NodeTree{NodeID: 600, Subs: []protocol.NodeTree{{NodeID: 500}}}}
			now := time.Unix(1000, 0)
			r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: st, SelfTest: func(string) bool { return true }}, now)
			if err != nil {
				t.Fatal(err)
			}
			r.Attach(h)
			requests := 0
			for i, m := range msgs {
				hd := typeOf(t, m.Msg)
				if hd.Type == protocol.TypeOTADataRequest {
					continue
				}
				if hd.Type == protocol.TypeOTAAnnounce && i > 0 {
					continue // the later announces repeat the first
				}
				now = now.Add(40 * time.Millisecond)
				r.HandlePackage(now, 1, hd, []byte(m.Msg))
				r.Tick(now)
				got := h.take(protocol.TypeOTADataRequest)
				if i+1 < len(msgs) && typeOf(t, msgs[i+1].Msg).Type == protocol.TypeOTADataRequest {
					if len(got) != 1 || string(got[0]) != msgs[i+1].Msg {
						t.Fatalf("request after %.60s:\n got %q\nwant %q", m.Msg, got, msgs[i+1].Msg)
					}
					requests++
				} else if len(got) != 0 {
					t.Fatalf("unexpected request %q", got)
				}
			}
			if requests != 20 {
				t.Fatalf("%d requests, want 20", requests)
			}
			now = now.Add(time.Second)
			r.Tick(now)
			if md5, ok := st.Active(); md5 != want || !ok || r.State() != StateConfirmed {
				t.Fatalf("active %s confirmed %v state %s", md5, ok, r.State())
			}
			var image []byte
			if name == "memory" {
				image = mem.Image()
			} else {
				rc, err := ss.OpenImage(ss.State().Active)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				buf.ReadFrom(rc)
				rc.Close()
				image = buf.Bytes()
			}
			if !bytes.Equal(image, img) {
				t.Fatalf("installed image (%d bytes, md5 %s) differs from c_firmware.bin", len(image), md5hexOf(image))
			}
		})
	}
}
