package stockota

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/cpppeer"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// The model against the real C++ receiver: each script below is played to
// a stock C++ receiver (internal/cpppeer) over loopback TCP by a Go mesh
// root, and to the model; both must do what the script says, which is
// what ota.hpp's addReceivePackageCallback does. These skip where g++,
// Boost or ../shared/vendor are missing.

const (
	scriptRoot = 1   // the Go root that sends the packages (the distributor)
	scriptRx   = 301 // the receiver
	scriptMD5  = "00112233445566778899aabbccddeeff"
)

// step is one move of a script.
type step struct {
	what string
	send protocol.Package
	// giveUp waits until a request task gave up after ten unanswered
	// requests (the C++ receiver logs it; the model runs out its retries).
	giveUp bool
	// again waits for the receiver to send this request again (a retry).
	again *wantReq
	// want is the next new request the step makes the receiver send (a
	// retry of an earlier one is not new); nil: none.
	want *wantReq
}

// wantReq is a request as the script expects it: from 0 is the receiver
// itself.
type wantReq struct {
	part        uint32
	from        uint32
	broadcasted bool
}

func (w wantReq) String() string {
	return fmt.Sprintf("part %d from %d broadcasted:%v", w.part, w.from, w.broadcasted)
}

func (w wantReq) matches(q protocol.DataRequest) bool {
	from := w.from
	if from == 0 {
		from = scriptRx
	}
	return q.PartNo == w.part && q.From == from && q.Broadcasted == w.broadcasted && q.Dest == scriptRoot && q.MD5 == scriptMD5
}

func reqKey(q protocol.DataRequest) string {
	return fmt.Sprintf("%d/%d/%d/%v/%s", q.PartNo, q.From, q.Dest, q.Broadcasted, q.MD5)
}

func announce(broadcasted bool) *protocol.Announce {
	return &protocol.Announce{From: scriptRoot, Routing: protocol.RouteBroadcast, MD5: scriptMD5, Role: "sensor", Hardware: "ESP8266", NoPart: 8, Broadcasted: broadcasted}
}

// chunk is part k as a distributor sends it: to 0 floods it (routing
// broadcast, dest the distributor, as stock-turbo does), else it goes to
// that node alone. Part k holds three bytes of value k.
func chunk(k uint32, broadcasted bool, to uint32) *protocol.Data {
	d := &protocol.Data{DataRequest: protocol.DataRequest{Announce: *announce(broadcasted), Dest: to, PartNo: k}}
	d.Base64 = []string{"AAAA", "AQEB", "AgIC", "AwMD", "BAQE", "BQUF", "BgYG", "BwcH"}[k]
	d.Routing = protocol.RouteSingle
	if to == 0 {
		d.Routing, d.Dest = protocol.RouteBroadcast, scriptRoot
	}
	return d
}

func parts(ks ...byte) []byte {
	var b []byte
	for _, k := range ks {
		b = append(b, k, k, k)
	}
	return b
}

// play plays steps to the C++ receiver (its OTA timers timeScale times
// faster) and to the model, each of which must write wrote.
func play(t *testing.T, timeScale int, steps []step, wrote []byte) {
	t.Run("cpp", func(t *testing.T) { playCpp(t, timeScale, steps, wrote) })
	t.Run("model", func(t *testing.T) { playModel(t, steps, wrote) })
}

// playModel plays steps to the model; it fails t where the model does
// something else.
func playModel(t *testing.T, steps []step, wrote []byte) {
	t.Helper()
	h := &recordingHost{id: scriptRx}
	r := &Receiver{Role: "sensor", Hardware: "ESP8266"}
	r.Attach(h)
	now := epoch
	seen := map[string]bool{}
	for i, s := range steps {
		from := len(h.sent)
		switch {
		case s.send != nil:
			raw := protocol.Encode(s.send)
			hd, err := protocol.ParseHeader(raw)
			if err != nil {
				t.Fatal(err)
			}
			r.HandlePackage(now, 1, hd, raw)
		case s.giveUp:
			for range 11 {
				if r.update.md5 == "" {
					break
				}
				now = now.Add(30 * time.Second)
				r.Tick(now)
			}
			if r.update.md5 != "" {
				t.Fatalf("model, step %d (%s): the request task did not give up", i+1, s.what)
			}
		case s.again != nil:
			now = now.Add(30 * time.Second)
			r.Tick(now)
			again := false
			for _, p := range h.sent[from:] {
				again = again || s.again.matches(*p.(*protocol.DataRequest))
			}
			if !again {
				t.Fatalf("model, step %d (%s): no request %s again", i+1, s.what, s.again)
			}
		}
		var fresh []protocol.DataRequest
		for _, p := range h.sent[from:] {
			q := *p.(*protocol.DataRequest)
			if !seen[reqKey(q)] {
				seen[reqKey(q)] = true
				fresh = append(fresh, q)
			}
		}
		switch {
		case s.want == nil && len(fresh) > 0:
			t.Fatalf("model, step %d (%s): sent %+v, want no new request", i+1, s.what, fresh)
		case s.want != nil && (len(fresh) != 1 || !s.want.matches(fresh[0])):
			t.Fatalf("model, step %d (%s): sent %+v, want one new request, %s", i+1, s.what, fresh, s.want)
		}
	}
	if !bytes.Equal(r.buf.Bytes(), wrote) {
		t.Fatalf("model wrote %v, want %v", r.buf.Bytes(), wrote)
	}
}

// scriptRootPlugin is the Go root's side of a script: it sends what the
// test gives it and passes on the DataRequests it receives.
type scriptRootPlugin struct {
	host mesh.Host
	reqs chan protocol.DataRequest
}

func (s *scriptRootPlugin) Attach(h mesh.Host) { s.host = h }
func (s *scriptRootPlugin) Types() []int       { return []int{protocol.TypeOTADataRequest} }
func (s *scriptRootPlugin) HandlePackage(_ time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) {
	p, err := protocol.Decode(raw)
	if q, ok := p.(*protocol.DataRequest); err == nil && ok && h.Dest == s.host.ID() {
		select {
		case s.reqs <- *q:
		default: // bounded: a test that stopped reading
		}
	}
}
func (s *scriptRootPlugin) Tick(time.Time)          {}
func (s *scriptRootPlugin) NextDeadline() time.Time { return time.Time{} }

// playCpp plays steps to a stock C++ receiver whose OTA timers run
// timeScale times faster; it fails t where the receiver does something
// else than the script says.
func playCpp(t *testing.T, timeScale int, steps []step, wrote []byte) {
	t.Helper()
	// Built before the deadline starts: a cold build takes a core for
	// half a minute, longer on a loaded machine, and is no part of the
	// exchange timed here.
	cpppeer.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := &scriptRootPlugin{reqs: make(chan protocol.DataRequest, 4096)}
	d, err := tcp.New(tcp.Config{
		Node:    mesh.Config{ID: scriptRoot, Root: true, ContainsRoot: true},
		Plugins: []mesh.Plugin{root},
		Listen:  "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	joined := make(chan struct{})
	go func() {
		for {
			select {
			case ev := <-d.Events():
				if c, ok := ev.(mesh.NewConnection); ok && c.NodeID == scriptRx {
					close(joined)
				}
			case <-runCtx.Done():
				return
			}
		}
	}()
	defer func() { stop(); <-done }()
	img := filepath.Join(t.TempDir(), "image.bin")
	rx := cpppeer.Start(ctx, t, cpppeer.Config{ID: scriptRx, Connect: d.Addr().String(), Role: "sensor", Image: img, Restart: "exit", OTATimeScale: timeScale})
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the C++ receiver did not join")
	}
	seen := map[string]bool{}
	next := func(i int, s step, match func(protocol.DataRequest) bool, what string) protocol.DataRequest {
		t.Helper()
		for {
			select {
			case q := <-root.reqs:
				if match(q) {
					return q
				}
			case <-ctx.Done():
				t.Fatalf("C++ receiver, step %d (%s): no %s (last events %s)", i+1, s.what, what, rx.Tail())
			}
		}
	}
	for i, s := range steps {
		switch {
		case s.send != nil:
			err := d.Do(ctx, func(now time.Time, _ *mesh.Node) { err = root.host.SendPackage(now, s.send) })
			if err != nil {
				t.Fatal(err)
			}
		case s.giveUp:
			if _, err := rx.Wait(ctx, func(e cpppeer.Event) bool {
				return e.Event == "error" && strings.Contains(e.Text, "Did not receive the requested data")
			}); err != nil {
				t.Fatalf("C++ receiver, step %d (%s): %v", i+1, s.what, err)
			}
		case s.again != nil:
			next(i, s, s.again.matches, "request "+s.again.String()+" again")
		}
		if s.want != nil {
			q := next(i, s, func(q protocol.DataRequest) bool {
				if seen[reqKey(q)] {
					return false // a retry
				}
				seen[reqKey(q)] = true
				return true
			}, "new request")
			if !s.want.matches(q) {
				t.Fatalf("C++ receiver, step %d (%s): sent part %d from %d broadcasted:%v, want %s", i+1, s.what, q.PartNo, q.From, q.Broadcasted, s.want)
			}
		}
	}
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wrote) {
		t.Fatalf("C++ receiver wrote %v, want %v", got, wrote)
	}
}

// A receiver in request mode ignores an Announce of the same md5 with
// broadcasted:true, stays in request mode (an out-of-sequence broadcast
// Data does not move it) and after an in-sequence broadcast Data asks for
// the next part in the Data's dest's name, broadcasted as the Data was.
func TestCppRequestModeKeepsToAnAnnouncedMD5(t *testing.T) {
	steps := []step{
		{what: "announce", send: announce(false), want: &wantReq{part: 0}},
		{what: "announce again, broadcasted", send: announce(true)},
		{what: "part 0 flooded", send: chunk(0, true, 0), want: &wantReq{part: 1, from: scriptRoot, broadcasted: true}},
		{what: "part 2 flooded, out of sequence", send: chunk(2, true, 0)},
		{what: "part 1 to the receiver", send: chunk(1, false, scriptRx), want: &wantReq{part: 2}},
	}
	play(t, 1, steps, parts(0, 1))
}

// In broadcast mode a receiver writes in-sequence Data whatever its
// broadcasted flag, ignores out-of-sequence Data with broadcasted:false,
// and on out-of-sequence Data with broadcasted:true drops out and asks for
// the part it lacks, in the Data's dest's name, broadcasted:false.
func TestCppBroadcastModeOutOfSequence(t *testing.T) {
	steps := []step{
		{what: "announce, broadcasted", send: announce(true)},
		{what: "part 0 flooded", send: chunk(0, true, 0)},
		{what: "part 2 flooded, broadcasted:false", send: chunk(2, false, 0)},
		{what: "part 1 flooded, broadcasted:false", send: chunk(1, false, 0)},
		{what: "part 3 flooded, out of sequence", send: chunk(3, true, 0), want: &wantReq{part: 2, from: scriptRoot}},
	}
	play(t, 1, steps, parts(0, 1))
}

// otaScale runs the C++ receiver's request task at 30 s / 100 = 0.3 s,
// so ten unanswered requests take 2.7 s.
const otaScale = 100

// After ten unanswered requests the receiver forgets the md5, not its
// request task: an Announce with broadcasted:true then starts no task (it
// is not root), but the next in-sequence Data restarts the old one, so
// the receiver asks for every next part again, in the Data's dest's name
// (broadcasted as the Data was), though it is in broadcast mode; an
// out-of-sequence flooded Data then starts a second task beside it.
func TestCppGivenUpTaskComesBack(t *testing.T) {
	steps := []step{
		{what: "announce", send: announce(false), want: &wantReq{part: 0}},
		{what: "part 0 to the receiver", send: chunk(0, false, scriptRx), want: &wantReq{part: 1}},
		{what: "ten requests unanswered", giveUp: true},
		{what: "announce, broadcasted", send: announce(true)},
		{what: "part 1 flooded", send: chunk(1, true, 0), want: &wantReq{part: 2, from: scriptRoot, broadcasted: true}},
		{what: "part 3 flooded, out of sequence", send: chunk(3, true, 0), want: &wantReq{part: 2, from: scriptRoot}},
	}
	play(t, otaScale, steps, parts(0, 1))
}

// Two request tasks at once: the old one, brought back by an in-sequence
// flooded Data, keeps asking for the part it was given after a second
// task took over, and when its retries run out it makes the receiver
// forget the md5 while the second task's transfer goes on: the next part
// is ignored, and the next Announce resumes from the part it had.
func TestCppStaleTaskForgetsTheTransfer(t *testing.T) {
	steps := []step{
		{what: "announce", send: announce(false), want: &wantReq{part: 0}},
		{what: "part 0 to the receiver", send: chunk(0, false, scriptRx), want: &wantReq{part: 1}},
		{what: "ten requests unanswered", giveUp: true},
		{what: "announce, broadcasted", send: announce(true)},
		{what: "part 1 flooded", send: chunk(1, true, 0), want: &wantReq{part: 2, from: scriptRoot, broadcasted: true}},
		{what: "part 3 flooded, out of sequence", send: chunk(3, true, 0), want: &wantReq{part: 2, from: scriptRoot}},
		{what: "part 2 flooded", send: chunk(2, true, 0), want: &wantReq{part: 3, from: scriptRoot, broadcasted: true}},
		{what: "the old task asks for part 2 again", again: &wantReq{part: 2, from: scriptRoot, broadcasted: true}},
		{what: "the old task's retries run out", giveUp: true},
		{what: "part 3 flooded", send: chunk(3, true, 0)},
		{what: "announce", send: announce(false), want: &wantReq{part: 3}},
	}
	play(t, otaScale, steps, parts(0, 1, 2))
}
