package protocol

import (
	"strings"
	"testing"
)

// benchTree builds a 100-node layout: the sender with 4 neighbours, each
// the root of a chain-and-branch subtree, ids in the range real nodes use.
func benchTree() NodeTree {
	id := uint32(2428398258)
	next := func() uint32 { id += 7919; return id }
	var build func(n int) NodeTree
	build = func(n int) NodeTree {
		t := NodeTree{NodeID: next()}
		n--
		for n > 0 {
			k := min(n, (n+1)/2)
			t.Subs = append(t.Subs, build(k))
			n -= k
		}
		return t
	}
	root := NodeTree{NodeID: 3907768579, Root: true}
	for range 3 {
		root.Subs = append(root.Subs, build(25))
	}
	root.Subs = append(root.Subs, build(24))
	return root
}

func benchMessages(b *testing.B) map[string][]byte {
	tr := benchTree()
	if tr.Size() != 100 {
		b.Fatalf("tree has %d nodes", tr.Size())
	}
	sync := &NodeSync{NodeTree: tr, Type: TypeNodeSyncReply, Dest: 416992913, From: tr.NodeID}
	chunk := make([]byte, 1024)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	data := NewData(2428398258, 3907768579)
	data.MD5, data.Hardware, data.Role, data.NoPart, data.PartNo = "efa6506336b817b6ac4387222da6b384", "ESP32", "sensor", 812, 17
	data.SetBytes(chunk)
	return map[string][]byte{
		"NodeSync100":  Encode(sync),
		"Broadcast":    Encode(&Broadcast{From: 3907768579, Msg: "Hello from node 3907768579, temperature 21.5 C"}),
		"OTAData1024":  Encode(data),
		"TimeSync":     Encode(&TimeSync{Type: TypeTimeSync, Dest: 37418, From: 887034362, Msg: TimeMsg{Type: TimeReply, T0: 32990, T1: 448585896, T2: 448596056}}),
		"SensorPlugin": Encode(NewSensor(3907768579)),
	}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkDecode(b *testing.B) {
	for name, msg := range benchMessages(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(msg); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for name, msg := range benchMessages(b) {
		p, err := Decode(msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				buf = p.AppendJSON(buf[:0])
			}
			reportRate(b)
		})
	}
}

func BenchmarkParseHeader(b *testing.B) {
	for name, msg := range benchMessages(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseHeader(msg); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
}

func BenchmarkReader(b *testing.B) {
	msgs := benchMessages(b)
	var stream []byte
	n := 0
	for range 50 {
		for _, m := range msgs {
			stream = AppendFrame(stream, m)
			n++
		}
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(strings.NewReader(string(stream)), 0)
		for range n {
			if _, err := r.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
}
