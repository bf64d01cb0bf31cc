package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshfleet/meshfleet/capture"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tap"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

const (
	captures    = "../../testdata/painlessmesh"
	waitTimeout = 15 * time.Second
)

// execute runs the meshfleet command line in-process and resets every flag
// afterwards, since the commands are package-level values.
func execute(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = executeTo(ctx, stdin, &out, &errOut, args...)
	return out.String(), errOut.String(), err
}

func executeTo(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, args ...string) error {
	rootCmd.SetArgs(args)
	rootCmd.SetIn(stdin)
	rootCmd.SetOut(stdout)
	rootCmd.SetErr(stderr)
	defer resetFlags(rootCmd)
	return rootCmd.ExecuteContext(ctx)
}

func resetFlags(c *cobra.Command) {
	// Cobra hands the root's context to a subcommand only while the
	// subcommand has none, so without this a second run in one test binary
	// would get the first run's (possibly cancelled) context.
	var unset context.Context
	c.SetContext(unset)
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			sv.Replace(nil)
		} else {
			f.Value.Set(f.DefValue)
		}
		f.Changed = false
	})
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "meshfleet ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("version output %q", out)
	}
	flagOut, _, err := execute(t, context.Background(), nil, "--version")
	if err != nil {
		t.Fatalf("meshfleet --version: %v", err)
	}
	if flagOut != out {
		t.Fatalf("meshfleet --version printed %q, meshfleet version %q", flagOut, out)
	}
}

func TestVersionString(t *testing.T) {
	for _, c := range []struct {
		version  string
		settings map[string]string
		want     string
	}{
		{"v1.2.0", nil, "v1.2.0"},
		{"(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "false"}, "(devel) (revision 0123456789ab)"},
		{"v0.0.0-20261207-0123456789ab+dirty", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "true"}, "v0.0.0-20261207-0123456789ab+dirty (revision 0123456789ab, modified)"},
		{"", nil, "(devel)"},
	} {
		if got := versionString(c.version, c.settings); got != c.want {
			t.Errorf("versionString(%q, %v) = %q, want %q", c.version, c.settings, got, c.want)
		}
	}
}

// countMessages counts the message lines of a JSONL capture with
// encoding/json, independently of package capture.
func countMessages(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, ok := rec["msg"]; ok {
			n++
		}
	}
	return n
}

func TestInspectJSONOnRealCaptures(t *testing.T) {
	files := []string{
		filepath.Join(captures, "a_two_nodes_idle.jsonl"),
		filepath.Join(captures, "b_chain_AB.jsonl"),
		filepath.Join(captures, "e_tree_link_2_4.jsonl"),
	}
	want := 0
	for _, f := range files {
		want += countMessages(t, f)
	}
	out, _, err := execute(t, context.Background(), nil, append([]string{"inspect", "--json"}, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Messages           int
		Decoded            int
		RoundtripIdentical int            `json:"roundtrip_identical"`
		ByType             map[string]int `json:"by_type"`
		Errors             []string
		Files              []struct {
			Path     string
			Messages int
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	// Every message of a stock capture decodes and re-encodes identically
	// (testdata/painlessmesh/README.md).
	if got.Messages != want || got.Decoded != want || got.RoundtripIdentical != want || len(got.Errors) != 0 {
		t.Fatalf("inspect: messages %d decoded %d identical %d errors %q; want %d, all decoded and identical",
			got.Messages, got.Decoded, got.RoundtripIdentical, got.Errors, want)
	}
	if len(got.Files) != len(files) || got.Files[1].Path != files[1] || got.Files[1].Messages != countMessages(t, files[1]) {
		t.Fatalf("per-file results %+v", got.Files)
	}
	sum := 0
	for _, n := range got.ByType {
		sum += n
	}
	if sum != want || got.ByType["5"] == 0 || got.ByType["8"] == 0 {
		t.Fatalf("by_type %v: sums to %d, want %d with node sync and broadcasts", got.ByType, sum, want)
	}
}

func TestInspectTextFormats(t *testing.T) {
	dir := t.TempDir()
	framed := filepath.Join(dir, "stream.bin")
	if err := os.WriteFile(framed, []byte(`{"type":8,"dest":0,"from":1,"msg":"hi"}`+"\x00\x00"+`{"nodeId":1,"type":5,"dest":0,"from":1}`+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := execute(t, context.Background(), nil, "inspect", framed, filepath.Join(captures, "a_two_nodes_idle.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, framed+": 2 messages, 2 decoded") {
		t.Fatalf("NUL-framed file not reported as 2 decoded messages:\n%s", out)
	}
	if !strings.Contains(out, "a_two_nodes_idle.raw: ") || !strings.Contains(out, "total: ") {
		t.Fatalf("raw capture or total missing:\n%s", out)
	}
}

func TestInspectUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.jsonl")
	os.WriteFile(garbage, []byte("{\"t\": 1, \"conn\": 1, \"dir\": \"client->server\", \"msg\": \"{}\"}\n{not json at all\n"), 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.jsonl"), "missing.jsonl"},
		{garbage, "garbage.jsonl"},
		{dir, dir},
	} {
		out, _, err := execute(t, context.Background(), nil, "inspect", "--json", c.path)
		if err == nil {
			t.Errorf("inspect %s: no error; output %s", c.path, out)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("inspect %s: error %q does not name the file", c.path, err)
		}
		if out != "" {
			t.Errorf("inspect %s: printed %q before failing", c.path, out)
		}
	}
	if _, _, err := execute(t, context.Background(), nil, "inspect"); err == nil {
		t.Error("inspect without files: no error")
	}
}

func TestNodeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"node"},
		{"node", "--id", "0", "--listen", ":0"},
		{"node", "--id", "7"},
		{"node", "--id", "-1", "--listen", ":0"},
		{"node", "--id", "7", "--listen", ":0", "--log-level", "loud"},
	} {
		if _, _, err := execute(t, context.Background(), strings.NewReader(""), args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// runPeer runs a node for the command under test to talk to.
func runPeer(t *testing.T, cfg tcp.Config) *tcp.Driver {
	t.Helper()
	d, err := tcp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d
}

func TestNodeCommand(t *testing.T) {
	peer := runPeer(t, tcp.Config{Node: mesh.Config{ID: 2}, Listen: "127.0.0.1:0"})

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := executeTo(context.Background(), inR, outW, io.Discard,
			"node", "--id", "1", "--root", "--time-authority", "--connect", peer.Addr().String())
		outW.Close()
		done <- err
	}()
	lines := make(chan map[string]any, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "not JSON: " + sc.Text()}
			}
			lines <- m
		}
	}()
	next := func(event string) map[string]any {
		t.Helper()
		deadline := time.After(waitTimeout)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("output ended before a %q line", event)
				}
				if e, _ := m["event"].(string); strings.HasPrefix(e, "not JSON") {
					t.Fatal(e)
				}
				if m["event"] == event {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q line", event)
			}
		}
	}

	if m := next("new_connection"); m["node"] != 2.0 {
		t.Fatalf("new_connection line %v, want node 2", m)
	}
	io.WriteString(inW, "nodes\n")
	if m := next("nodes"); fmt.Sprint(m["nodes"]) != "[2]" {
		t.Fatalf("nodes line %v, want nodes [2]", m)
	}
	io.WriteString(inW, "what\n")
	next("error")

	// The peer sees the command's node with its flags.
	var tree protocol.NodeTree
	peer.Do(context.Background(), func(_ time.Time, n *mesh.Node) { tree = n.Tree() })
	if len(tree.Subs) != 1 || tree.Subs[0].NodeID != 1 || !tree.Subs[0].Root || !tree.Subs[0].HasTimeAuthority {
		t.Fatalf("peer's tree %s, want node 1 with root and hasTimeAuthority", tree.String())
	}

	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("node did not exit at end of input")
	}
}

func TestTapCommandRecordsRealNodes(t *testing.T) {
	server := runPeer(t, tcp.Config{Node: mesh.Config{ID: 2428398258, Root: true}, Listen: "127.0.0.1:0"})
	outPath := filepath.Join(t.TempDir(), "cap.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runTap(ctx, tap.Config{Listen: "127.0.0.1:0", Upstream: server.Addr().String()}, outPath, &stdout,
			func(a net.Addr) { addrc <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("tap failed: %v", err)
	}

	client, err := tcp.New(tcp.Config{Node: mesh.Config{ID: 3907768579}, Connect: []string{addr.String()}})
	if err != nil {
		t.Fatal(err)
	}
	clientCtx, stopClient := context.WithCancel(context.Background())
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		client.Run(clientCtx)
	}()
	deadline := time.After(waitTimeout)
	for synced := false; !synced; {
		select {
		case ev := <-client.Events():
			_, synced = ev.(mesh.NewConnection)
		case <-deadline:
			t.Fatal("client never synced through the tap")
		}
	}
	stopClient()
	<-clientDone
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	file, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, stdout.Bytes()) {
		t.Fatalf("--out file and stdout differ:\n%s\n---\n%s", file, stdout.Bytes())
	}
	recs, err := capture.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var sawRequest, sawReply, closed int
	for _, r := range recs {
		if r.Event == capture.EventClosed {
			closed++
			continue
		}
		h, err := protocol.ParseHeader([]byte(r.Msg))
		if err != nil {
			t.Fatalf("recorded message %q: %v", r.Msg, err)
		}
		if h.Type == protocol.TypeNodeSyncRequest && r.Dir == capture.ClientToServer && h.From == 3907768579 {
			sawRequest++
		}
		if h.Type == protocol.TypeNodeSyncReply && r.Dir == capture.ServerToClient && h.From == 2428398258 {
			sawReply++
		}
	}
	if sawRequest == 0 || sawReply == 0 || closed != 2 {
		t.Fatalf("capture has %d requests, %d replies, %d closed events; want node sync both ways and both directions closed", sawRequest, sawReply, closed)
	}
	if rep := capture.Inspect(recs); rep.Decoded != rep.Messages || rep.RoundtripIdentical != rep.Typed {
		t.Fatalf("capture does not decode cleanly: %+v", rep)
	}
}
