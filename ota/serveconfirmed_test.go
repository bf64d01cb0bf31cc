package ota

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// rebooted returns the probe's node after a restart into the image it
// installed: a fresh receiver on the same store, which heard the offer
// again and knows nothing of the transfer's staged chunks.
func (p *repairProbe) rebooted(serve bool) {
	p.t.Helper()
	for i := range p.data {
		p.push(i)
	}
	p.advance(time.Second) // the self test confirms the image
	if md5, confirmed := p.r.cfg.Store.Active(); md5 != md5hex(p.img) || !confirmed {
		p.t.Fatalf("not installed and confirmed: active %q %v", md5, confirmed)
	}
	r, err := NewReceiver(ReceiverConfig{Role: "r", Hardware: "h", Store: p.r.cfg.Store, Seed: 1, ServeConfirmed: serve,
		SelfTest: func(string) bool { return true }}, p.now)
	if err != nil {
		p.t.Fatal(err)
	}
	r.Attach(p.h)
	p.r = r
	md5 := md5hex(p.img)
	p.recv(&Offer{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: probeID, MD5: md5, Role: "r", Hardware: "h",
		Size: int64(len(p.img)), Mode: string(ModeBroadcast), Method: "none", TSize: int64(len(p.img)), TMD5: md5,
		ChunkSize: 16, Chunks: len(p.data), Encoding: EncDense})
	p.h.sent = nil
}

// A relay that rebooted into the image it confirmed serves its child's
// repair asks from the running slot, so a straggler below it does not go
// to the root; without ServeConfirmed it refuses, as before.
func TestRebootedNodeServesConfirmedImage(t *testing.T) {
	p := newRepairProbe(t)
	p.rebooted(true)
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "2-3"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 0 {
		t.Fatalf("refused: %s", refused)
	}
	chunks := p.h.take(TypeChunk)
	if len(chunks) != 2 {
		t.Fatalf("served %d chunks, want 2", len(chunks))
	}
	for k, raw := range chunks {
		c, err := DecodeChunk(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Dense.DecodeString(c.Data)
		if err != nil || c.Dest != probeChild || c.Index != 2+k || string(got) != string(p.data[2+k]) {
			t.Fatalf("served %+v (%v), want chunk %d to %d", c, err, 2+k, probeChild)
		}
	}
	// The last chunk is short, as the image ends.
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "3"})
	p.advance(time.Second)
	if chunks := p.h.take(TypeChunk); len(chunks) != 1 {
		t.Fatalf("last chunk: served %d", len(chunks))
	}
	// A transfer of another image, or one it never heard offered, is refused.
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: "other", Parts: "0"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 1 {
		t.Fatalf("ask for another transfer: %d refusals, want 1", len(refused))
	}

	off := newRepairProbe(t)
	off.rebooted(false)
	off.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "2"})
	off.advance(time.Second)
	if refused := off.h.take(TypeRefuse); len(refused) != 1 {
		t.Fatalf("without ServeConfirmed: %d refusals, want 1", len(refused))
	}
}

// A compressed transfer is not the running image's bytes: not served.
func TestConfirmedImageServesOnlyUncompressedTransfers(t *testing.T) {
	p := newRepairProbe(t)
	p.rebooted(true)
	md5 := md5hex(p.img)
	p.recv(&Offer{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: "fw-z", MD5: md5, Role: "r", Hardware: "h",
		Size: int64(len(p.img)), Mode: string(ModeBroadcast), Method: "deflate", TSize: 40, TMD5: md5hex([]byte("x")),
		ChunkSize: 16, Chunks: 3, Encoding: EncDense})
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: "fw-z", Parts: "0"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 1 {
		t.Fatalf("compressed transfer: %d refusals, want 1", len(refused))
	}
}

// A Linux node's slot store reads its running image for serving too.
func TestSlotStoreReadsTheRunningImage(t *testing.T) {
	_, st := openSlotDir(t, t.TempDir(), nil)
	md5 := switchImage(t, st)
	if _, _, err := st.Boot(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Confirm(time.Now()); err != nil {
		t.Fatal(err)
	}
	if active, ok := st.Active(); active != md5 || !ok {
		t.Fatalf("active %s %v", active, ok)
	}
	rd, ok := st.(ActiveReader)
	if !ok {
		t.Fatalf("%T does not read its running image", st)
	}
	img := bytes.Repeat([]byte("meshfleet image "), 64)
	got, err := rd.ReadActive(1000, 100)
	if err != nil || !bytes.Equal(got, img[1000:1024]) {
		t.Fatalf("read at 1000: %q %v, want the image's last 24 bytes", got, err)
	}
}
