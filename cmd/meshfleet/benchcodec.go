package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/protocol"
)

// codecSample is one message kind the codec benchmark measures.
type codecSample struct {
	name string
	msg  []byte
}

// codecSamples are the messages that dominate a mesh's traffic: node sync
// of a 100-node layout, a broadcast, and an OTA Data package of 1 KiB.
func codecSamples() []codecSample {
	id := uint32(2428398258)
	var build func(n int) protocol.NodeTree
	build = func(n int) protocol.NodeTree {
		id += 7919
		t := protocol.NodeTree{NodeID: id}
		for n--; n > 0; {
			k := (n + 1) / 2
			t.Subs = append(t.Subs, build(k))
			n -= k
		}
		return t
	}
	tree := protocol.NodeTree{NodeID: 3907768579, Root: true}
	for _, n := range []int{25, 25, 25, 24} {
		tree.Subs = append(tree.Subs, build(n))
	}
	chunk := make([]byte, 1024)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	data := protocol.NewData(2428398258, 3907768579)
	data.MD5, data.Hardware, data.Role, data.NoPart, data.PartNo = "efa6506336b817b6ac4387222da6b384", "ESP32", "sensor", 812, 17
	data.SetBytes(chunk)
	return []codecSample{
		{"node-sync (100 nodes)", protocol.Encode(&protocol.NodeSync{NodeTree: tree, Type: protocol.TypeNodeSyncReply, Dest: 416992913, From: tree.NodeID})},
		{"broadcast", protocol.Encode(&protocol.Broadcast{From: 3907768579, Msg: "Hello from node 3907768579, temperature 21.5 C"})},
		{"ota-data (1 KiB)", protocol.Encode(data)},
	}
}

// codecResult compares our codec with encoding/json, run in the same
// process: a decode-and-re-encode round trip per message.
type codecResult struct {
	Message  string  `json:"message"`
	Bytes    int     `json:"bytes"`
	OursPS   float64 `json:"ours_msgs_per_s"`
	StdPS    float64 `json:"encoding_json_msgs_per_s"`
	Speedup  float64 `json:"speedup"`
	Identity bool    `json:"ours_roundtrip_identical"`
}

func runCodecBench(samples []codecSample) ([]codecResult, error) {
	var out []codecResult
	for _, s := range samples {
		p, err := protocol.Decode(s.msg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		ours := testing.Benchmark(func(b *testing.B) {
			buf := make([]byte, 0, len(s.msg))
			for b.Loop() {
				p, _ := protocol.Decode(s.msg)
				buf = p.AppendJSON(buf[:0])
			}
		})
		// The baseline is what a generic Go program would do: decode into
		// a map and marshal it back (which reorders keys and escapes HTML,
		// so it is not even wire-compatible; it is only a yardstick).
		std := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				var m map[string]any
				json.Unmarshal(s.msg, &m)
				json.Marshal(m)
			}
		})
		r := codecResult{Message: s.name, Bytes: len(s.msg),
			OursPS: perSecond(ours), StdPS: perSecond(std),
			Identity: string(p.AppendJSON(nil)) == string(s.msg)}
		if r.StdPS > 0 {
			r.Speedup = r.OursPS / r.StdPS
		}
		out = append(out, r)
	}
	return out, nil
}

func perSecond(r testing.BenchmarkResult) float64 {
	if r.T <= 0 {
		return 0
	}
	return float64(r.N) / r.T.Seconds()
}

func newBenchCodecCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "codec [--json]",
		Short: "Decode+encode round trips of the main message kinds, against encoding/json in the same process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runCodecBench(codecSamples())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				return enc.Encode(res)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "message\tbytes\tours msgs/s\tencoding/json msgs/s\tratio\tbyte-identical")
			for _, r := range res {
				fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.1f×\t%v\n", r.Message, r.Bytes, r.OursPS, r.StdPS, r.Speedup, r.Identity)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}
