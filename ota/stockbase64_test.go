package ota

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// TestStockDataDecodesAsCpp runs the 100 inputs of the C++ library's
// lenient base64 decoder (testdata/conformance/base64_decode.jsonl) through
// the receiver's stock path: each ends the "data" of a one-chunk stock
// transfer, and the receiver must install exactly the bytes the C++
// decoder produced (docs/protocol.md §8.1). Stock nodes
// accept padding-free, URL-safe and stray characters, so a distributor
// that sends them must get the same image from a Go receiver.
func TestStockDataDecodesAsCpp(t *testing.T) {
	f, err := os.Open("../testdata/conformance/base64_decode.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A prefix of whole base64 groups keeps the chunk non-empty (two
	// vectors decode to nothing, and the C++ distributor never sends an
	// empty chunk) without moving the vector's own 4-character groups.
	prefix := bytes.Repeat([]byte{0xA5}, 48)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v struct {
			In     string `json:"in"`
			OutHex string `json:"out_hex"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		want, err := hex.DecodeString(v.OutHex)
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		img := append(bytes.Clone(prefix), want...)
		if got := receiveStock(t, img, protocol.EncodeBase64(prefix)+v.In); got == nil {
			t.Errorf("stock data %q: nothing installed (what we decoded does not have the announced MD5); the C++ decoder gives %x", v.In, want)
		} else if !bytes.Equal(got, img) {
			t.Errorf("stock data %q installed as %x, want %x (the C++ decoder's bytes)", v.In, got[min(len(got), len(prefix)):], want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("read %d vectors, want 100", n)
	}
}

// receiveStock runs a one-chunk stock transfer of img (announced with its
// MD5) into a fresh receiver, the chunk carried as the base64 text data,
// and returns the image the receiver installed (nil if none).
func receiveStock(t *testing.T, img []byte, data string) []byte {
	t.Helper()
	const dist, self = 500, 600
	mem := NewMemoryStore("")
	h := &fakeHost{id: self, tree: protocol.NodeTree{NodeID: self, Subs: []protocol.NodeTree{{NodeID: dist}}}}
	now := time.Unix(1000, 0)
	r, err := NewReceiver(ReceiverConfig{Role: "sensor", Hardware: "ESP32", Store: mem, SelfTest: func(string) bool { return true }}, now)
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(h)
	ann := protocol.Announce{From: dist, Routing: protocol.RouteBroadcast, MD5: md5hexOf(img),
		Hardware: "ESP32", Role: "sensor", NoPart: 1}
	deliver := func(p protocol.Package) {
		msg := p.AppendJSON(nil)
		hd, err := protocol.ParseHeader(msg)
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(40 * time.Millisecond)
		r.HandlePackage(now, 1, hd, msg)
		r.Tick(now)
	}
	deliver(&ann)
	unicast := ann
	unicast.Routing = protocol.RouteSingle // the answer to our request
	deliver(&protocol.Data{DataRequest: protocol.DataRequest{Announce: unicast, Dest: self}, Base64: data})
	now = now.Add(time.Second)
	r.Tick(now)
	if md5, ok := mem.Active(); md5 != ann.MD5 || !ok {
		return nil
	}
	return mem.Image()
}
