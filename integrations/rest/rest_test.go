package rest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
	"github.com/meshfleet/meshfleet/protocol"
)

func newServer(t *testing.T, token string) (*httptest.Server, *fleettest.Memory) {
	t.Helper()
	m := &fleettest.Memory{
		NodeList: []fleet.Node{{ID: 1, Status: "online", Gateway: true}, {ID: 2, Status: "offline"}},
		Tree:     protocol.NodeTree{NodeID: 1, Root: true, Subs: []protocol.NodeTree{{NodeID: 2}}},
		Sum:      fleet.Summary{NodeCount: 2, OnlineCount: 1, HealthScore: 60},
	}
	srv := httptest.NewServer(Handler(m, Config{Token: token, MaxUploadSize: 1024}))
	t.Cleanup(srv.Close)
	return srv, m
}

func do(t *testing.T, method, url, token string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadEndpoints(t *testing.T) {
	srv, _ := newServer(t, "")
	code, body := do(t, "GET", srv.URL+"/api/v1/nodes", "", nil)
	var nodes []fleet.Node
	if code != 200 || json.Unmarshal([]byte(body), &nodes) != nil || len(nodes) != 2 || nodes[1].ID != 2 {
		t.Fatalf("nodes: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes/2", "", nil); code != 200 || !strings.Contains(body, `"status":"offline"`) {
		t.Fatalf("node: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes/9", "", nil); code != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("unknown node: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes/abc", "", nil); code != 400 || !strings.Contains(body, "decimal") {
		t.Fatalf("bad node id: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/topology", "", nil); code != 200 || strings.TrimSpace(body) != `{"nodeId":1,"root":true,"subs":[{"nodeId":2}]}` {
		t.Fatalf("topology: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/v1/alerts", "", nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("alerts: %d %s", code, body)
	}
}

func TestTokenAuth(t *testing.T) {
	srv, _ := newServer(t, "s3cret")
	if code, body := do(t, "GET", srv.URL+"/api/v1/nodes", "", nil); code != 401 || !strings.Contains(body, "Bearer") {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/nodes", "wrong", nil); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/nodes", "s3cret", nil); code != 200 {
		t.Fatalf("right token: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/healthz", "", nil); code != 200 {
		t.Fatalf("healthz needs no token: %d", code)
	}
}

func TestFirmwareAndCampaigns(t *testing.T) {
	srv, m := newServer(t, "")
	img := bytes.Repeat([]byte{0xE9, 1, 2, 3}, 64)
	code, body := do(t, "POST", srv.URL+"/api/v1/firmware?role=sensor&hardware=ESP32&version=1.0", "", bytes.NewReader(img))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var im fleet.Image
	json.Unmarshal([]byte(body), &im)
	if code, body := do(t, "POST", srv.URL+"/api/v1/firmware?role=sensor&hardware=ESP32&version=1.0&md5=00000000000000000000000000000000", "", bytes.NewReader(img)); code != 400 || !strings.Contains(body, "md5 mismatch") {
		t.Fatalf("bad md5: %d %s", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/firmware?role=sensor&hardware=ESP32&version=1.0", "", bytes.NewReader(make([]byte, 2048))); code != 413 || !strings.Contains(body, "max_upload_size") {
		t.Fatalf("oversize: %d %s", code, body)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/firmware", "", bytes.NewReader(img)); code != 400 {
		t.Fatalf("missing metadata: %d", code)
	}
	code, body = do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{"image":"`+im.ID+`","mode":"broadcast"}`))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	var c fleet.Campaign
	json.Unmarshal([]byte(body), &c)
	if code, body := do(t, "POST", srv.URL+"/api/v1/ota/"+c.ID+"/pause", "", nil); code != 200 || !strings.Contains(body, `"state":"paused"`) {
		t.Fatalf("pause: %d %s", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/ota/"+c.ID+"/pause", "", nil); code != 409 {
		t.Fatalf("pause twice: %d %s", code, body)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/ota/"+c.ID+"/explode", "", nil); code != 404 {
		t.Fatalf("bad action: %d", code)
	}
	if code, _ := do(t, "DELETE", srv.URL+"/api/v1/ota/"+c.ID, "", nil); code != 200 {
		t.Fatalf("abort: %d", code)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{"image":"x","speed":9}`)); code != 400 || !strings.Contains(body, "speed") {
		t.Fatalf("unknown field: %d %s", code, body)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{"image":"nope"}`)); code != 404 {
		t.Fatalf("unknown image: %d", code)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/ota", "", strings.NewReader(`{not json`)); code != 400 {
		t.Fatalf("malformed: %d", code)
	}
	_ = m
}

func TestMessages(t *testing.T) {
	srv, m := newServer(t, "")
	if code, _ := do(t, "POST", srv.URL+"/api/v1/messages", "", strings.NewReader(`{"to":"broadcast","msg":"hi"}`)); code != 202 {
		t.Fatalf("broadcast: %d", code)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/messages", "", strings.NewReader(`{"to":"7","msg":"yo"}`)); code != 202 {
		t.Fatalf("single: %d", code)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/messages", "", strings.NewReader(`{"to":"-1","msg":"yo"}`)); code != 400 {
		t.Fatalf("bad dest: %d", code)
	}
	got := m.SentMessages()
	if len(got) != 2 || got[0] != "broadcast hi" || got[1] != "single 7 yo" {
		t.Fatalf("sent %q", got)
	}
	_ = context.Background
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditLines: each state-changing request leaves one audit line with
// who, from where, what, on what and the result; reads leave none.
func TestAuditLines(t *testing.T) {
	logs := &syncBuffer{}
	m := &fleettest.Memory{}
	srv := httptest.NewServer(Handler(m, Config{Token: "s3cret", MaxUploadSize: 1024, Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	defer srv.Close()
	img := bytes.Repeat([]byte{0xE9, 1, 2, 3}, 64)
	code, body := do(t, "POST", srv.URL+"/api/v1/firmware?role=sensor&hardware=ESP32&version=1.0", "s3cret", bytes.NewReader(img))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var im fleet.Image
	json.Unmarshal([]byte(body), &im)
	code, body = do(t, "POST", srv.URL+"/api/v1/ota", "s3cret", strings.NewReader(`{"image":"`+im.ID+`"}`))
	if code != 201 {
		t.Fatalf("campaign start: %d %s", code, body)
	}
	var c fleet.Campaign
	json.Unmarshal([]byte(body), &c)
	do(t, "POST", srv.URL+"/api/v1/ota/"+c.ID+"/pause", "s3cret", nil)
	do(t, "POST", srv.URL+"/api/v1/ota/"+c.ID+"/pause", "s3cret", nil)
	do(t, "DELETE", srv.URL+"/api/v1/ota/"+c.ID, "wrong", nil)
	do(t, "POST", srv.URL+"/api/v1/messages", "s3cret", strings.NewReader(`{"to":"7","msg":"yo"}`))
	do(t, "GET", srv.URL+"/api/v1/ota", "s3cret", nil)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=image.add target="sensor/ESP32/1.0 id ` + im.ID + `" result=ok`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=campaign.start target="image ` + im.ID + ` id ` + c.ID + `" result=ok`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=campaign.pause target="campaign ` + c.ID + `" result=ok`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=campaign.pause target="campaign ` + c.ID + `" result="409 .*paused.*"`,
		`msg=audit via=rest who=unauthenticated remote=127.0.0.1:\d+ action=campaign.abort target="campaign ` + c.ID + `" result="401 missing or wrong token.*"`,
		`msg=audit via=rest who=token remote=127.0.0.1:\d+ action=message.send target=7 result=ok`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs)
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d:\n%s\nwant %s", i, lines[i], w)
		}
	}
}

// Messages the mesh refuses get 413 (too large) and 429 (over the airtime
// budget) with the reason.
func TestMessagesRefused(t *testing.T) {
	srv, m := newServer(t, "")
	m.SendCheck = func(msg string) error {
		switch msg {
		case "big":
			return fmt.Errorf("message is 9000 bytes as a mesh package, more than send.max_size (8192): %w", fleet.ErrTooLarge)
		case "flood":
			return fmt.Errorf("the mesh's airtime budget for messages is used up; retry later: %w", fleet.ErrRateLimited)
		}
		return nil
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/messages", "", strings.NewReader(`{"to":"broadcast","msg":"big"}`)); code != 413 || !strings.Contains(body, "send.max_size") {
		t.Fatalf("too large: %d %s", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/messages", "", strings.NewReader(`{"to":"7","msg":"flood"}`)); code != 429 || !strings.Contains(body, "retry later") {
		t.Fatalf("rate limited: %d %s", code, body)
	}
	if got := m.SentMessages(); len(got) != 0 {
		t.Fatalf("sent %q", got)
	}
}

// TestUploadRefusesWhatIsNotAnImage: a form, a JSON document, text or a
// compressed body is not a firmware image; it is refused with 415 and the
// right way to upload, and nothing is stored.
func TestUploadRefusesWhatIsNotAnImage(t *testing.T) {
	srv, m := newServer(t, "")
	url := srv.URL + "/api/v1/firmware?role=sensor&hardware=ESP32&version=1.0"
	img := bytes.Repeat([]byte{0xE9, 1, 2, 3}, 64)

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "fw.bin")
	fw.Write(img)
	mw.Close()
	for _, c := range []struct {
		contentType, encoding string
		body                  []byte
	}{
		{mw.FormDataContentType(), "", form.Bytes()},
		{"application/json", "", []byte(`{"image":"6QECAw=="}`)},
		{"application/problem+json; charset=utf-8", "", []byte(`{}`)},
		{"application/x-www-form-urlencoded", "", img}, // curl --data-binary without -H
		{"text/plain; charset=utf-8", "", img},
		{"application/xml", "", []byte(`<image/>`)},
		{"not a media type", "", img},
		{"application/octet-stream", "gzip", img},
	} {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(c.body))
		req.Header.Set("Content-Type", c.contentType)
		if c.encoding != "" {
			req.Header.Set("Content-Encoding", c.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q, Content-Encoding %q: %d %s, want 415", c.contentType, c.encoding, resp.StatusCode, body)
			continue
		}
		for _, want := range []string{"--data-binary @fw.bin", "Content-Type: application/octet-stream"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("Content-Type %q: message lacks %q: %s", c.contentType, want, body)
			}
		}
	}
	if imgs, _ := m.Images(context.Background()); len(imgs) != 0 {
		t.Fatalf("refused uploads were stored: %+v", imgs)
	}

	// The raw bytes, labelled as such or not labelled at all, are an image.
	for i, ct := range []string{"application/octet-stream", ""} {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s.%d", url, i), bytes.NewReader(append(img, byte(i))))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("Content-Type %q: %d %s, want 201", ct, resp.StatusCode, body)
		}
	}
}

// blockingStore holds uploads inside AddImage until release closes; it
// refuses a third one while two are held.
type blockingStore struct {
	*fleettest.Memory
	inFlight atomic.Int32
	entered  chan struct{}
	release  chan struct{}
}

func (b *blockingStore) AddImage(ctx context.Context, up fleet.ImageUpload, r io.Reader) (fleet.Image, bool, error) {
	defer b.inFlight.Add(-1)
	if b.inFlight.Add(1) > 2 {
		return fleet.Image{}, false, errors.New("a third upload reached the store while two were in progress")
	}
	b.entered <- struct{}{}
	<-b.release
	return b.Memory.AddImage(ctx, up, r)
}

// TestUploadConcurrencyCap: beyond MaxConcurrentUploads an upload is
// refused at once with 503 and Retry-After, without reading its body; a
// slot frees when an upload ends.
func TestUploadConcurrencyCap(t *testing.T) {
	svc := &blockingStore{Memory: &fleettest.Memory{}, entered: make(chan struct{}, 8), release: make(chan struct{})}
	srv := httptest.NewServer(Handler(svc, Config{MaxUploadSize: 1024, MaxConcurrentUploads: 2}))
	t.Cleanup(srv.Close)
	release := sync.OnceFunc(func() { close(svc.release) })
	t.Cleanup(release) // before srv.Close, which waits for the handlers
	url := func(v int) string {
		return fmt.Sprintf("%s/api/v1/firmware?role=sensor&hardware=ESP32&version=%d", srv.URL, v)
	}
	img := func(v int) io.Reader { return bytes.NewReader([]byte{0xE9, byte(v)}) }

	codes := make(chan int, 2)
	for v := range 2 {
		go func() {
			code, body := do(t, "POST", url(v), "", img(v))
			if code != http.StatusCreated {
				t.Errorf("upload %d: %d %s", v, code, body)
			}
			codes <- code
		}()
		<-svc.entered
	}
	req, _ := http.NewRequest("POST", url(2), img(2))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max_concurrent_uploads") {
		t.Fatalf("third upload: %d Retry-After %q %s, want 503 with Retry-After naming firmware.max_concurrent_uploads",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	release()
	<-codes
	<-codes
	if code, body := do(t, "POST", url(3), "", img(3)); code != http.StatusCreated {
		t.Fatalf("upload after the others ended: %d %s", code, body)
	}
}

// TestUploadStalledIsDropped: an upload that stops sending is ended after
// UploadIdleTimeout with 400 and frees its slot.
func TestUploadStalledIsDropped(t *testing.T) {
	m := &fleettest.Memory{}
	srv := httptest.NewServer(Handler(m, Config{MaxUploadSize: 1024, MaxConcurrentUploads: 1, UploadIdleTimeout: 100 * time.Millisecond}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/firmware?role=sensor&hardware=ESP32&version=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789")
	// Bounded wait for the server's answer: far longer than the idle timeout.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "reading upload") {
		t.Fatalf("stalled upload: %d %s, want 400", resp.StatusCode, body)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/firmware?role=sensor&hardware=ESP32&version=2", "", strings.NewReader("image")); code != http.StatusCreated {
		t.Fatalf("upload after the stalled one: %d %s", code, body)
	}
}

// When the service fails or does not answer before the request's context
// ends, every endpoint that asks it answers 503 with the service's error,
// never 200 with empty data.
func TestServiceUnavailableIs503(t *testing.T) {
	m := &fleettest.Memory{NodeList: []fleet.Node{{ID: 1, Status: "online"}}, Sum: fleet.Summary{NodeCount: 1}}
	h := Handler(m, Config{})
	requests := []struct{ method, path, body string }{
		{"GET", "/api/v1/summary", ""},
		{"GET", "/api/v1/nodes", ""},
		{"GET", "/api/v1/nodes/1", ""},
		{"GET", "/api/v1/topology", ""},
		{"GET", "/api/v1/alerts?all=1", ""},
		{"GET", "/api/v1/firmware", ""},
		{"DELETE", "/api/v1/firmware/abc", ""},
		{"GET", "/api/v1/ota", ""},
		{"GET", "/api/v1/ota/c1", ""},
		{"POST", "/api/v1/ota", `{"image":"abc"}`},
		{"POST", "/api/v1/ota/c1/pause", ""},
		{"POST", "/api/v1/ota/c1/resume", ""},
		{"POST", "/api/v1/ota/c1/abort", ""},
		{"DELETE", "/api/v1/ota/c1", ""},
		{"POST", "/api/v1/messages", `{"to":"broadcast","msg":"hi"}`},
	}
	faults := []struct {
		name  string
		fault func(context.Context, string) error
	}{
		{"fails", fleettest.Fail(fmt.Errorf("gateway is not running: %w", fleet.ErrUnavailable))},
		{"hangs", fleettest.Hang}, // until the request's context ends
	}
	for _, f := range faults {
		m.SetFault(f.fault)
		for _, r := range requests {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			req := httptest.NewRequestWithContext(ctx, r.method, r.path, strings.NewReader(r.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			cancel()
			var e struct{ Error string }
			if rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &e) != nil ||
				!strings.Contains(e.Error, "gateway node loop busy or stopped") {
				t.Errorf("service %s: %s %s: %d %s, want 503 with the service's error", f.name, r.method, r.path, rec.Code, rec.Body)
			}
		}
	}
}
