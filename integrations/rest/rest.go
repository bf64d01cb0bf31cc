// Package rest serves the gateway's JSON API over HTTP: nodes, topology,
// alerts, firmware and OTA distributions, with bearer-token auth when a
// token is configured. The documents are the fleet package's types, the
// same that the MQTT bridge publishes.
package rest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// Config tunes the API.
type Config struct {
	Token                string // empty: no auth
	MaxUploadSize        int64  // firmware upload limit in bytes
	MaxConcurrentUploads int    // firmware uploads at once (default 2); more are refused with 503
	// UploadIdleTimeout ends an upload that sends nothing for this long
	// (default 30 s), so a stalled client cannot hold an upload slot.
	UploadIdleTimeout time.Duration
	Logger            *slog.Logger
	Stream            StreamConfig // GET /api/v1/stream
}

// maxJSONBody bounds request documents other than firmware uploads.
const maxJSONBody = 1 << 20

const (
	defaultUploadIdleTimeout = 30 * time.Second
	// uploadRetryAfter is what a client refused for want of an upload
	// slot is told to wait (Retry-After, seconds).
	uploadRetryAfter = 5
)

// Handler returns the API mounted under /api/v1/ plus /healthz.
func Handler(svc fleet.Service, cfg Config) http.Handler {
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = 16 << 20
	}
	if cfg.MaxConcurrentUploads <= 0 {
		cfg.MaxConcurrentUploads = 2
	}
	if cfg.UploadIdleTimeout <= 0 {
		cfg.UploadIdleTimeout = defaultUploadIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Stream = cfg.Stream.withDefaults()
	a := &api{svc: svc, cfg: cfg, uploadSlots: make(chan struct{}, cfg.MaxConcurrentUploads), streams: make(chan struct{}, cfg.Stream.MaxClients)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /api/v1/summary", a.auth(func(w http.ResponseWriter, r *http.Request) {
		s, err := svc.Summary(r.Context())
		a.reply(w, s, err)
	}))
	mux.HandleFunc("GET /api/v1/nodes", a.auth(func(w http.ResponseWriter, r *http.Request) {
		nodes, err := svc.Nodes(r.Context())
		a.reply(w, orEmpty(nodes), err)
	}))
	mux.HandleFunc("GET /api/v1/nodes/{id}", a.auth(a.node))
	mux.HandleFunc("GET /api/v1/topology", a.auth(a.topology))
	mux.HandleFunc("GET /api/v1/alerts", a.auth(func(w http.ResponseWriter, r *http.Request) {
		alerts, err := svc.Alerts(r.Context(), r.URL.Query().Get("all") == "1" || r.URL.Query().Get("all") == "true")
		a.reply(w, orEmpty(alerts), err)
	}))
	mux.HandleFunc("GET /api/v1/firmware", a.auth(a.images))
	mux.HandleFunc("POST /api/v1/firmware", a.audit("image.add", imageTarget, a.auth(a.upload)))
	mux.HandleFunc("DELETE /api/v1/firmware/{id}", a.audit("image.remove", imageIDTarget, a.auth(a.removeImage)))
	mux.HandleFunc("GET /api/v1/ota", a.auth(func(w http.ResponseWriter, r *http.Request) {
		cs, err := svc.Campaigns(r.Context())
		a.reply(w, orEmpty(cs), err)
	}))
	mux.HandleFunc("POST /api/v1/ota", a.audit("campaign.start", nil, a.auth(a.start)))
	mux.HandleFunc("GET /api/v1/ota/{id}", a.auth(a.campaign))
	mux.HandleFunc("POST /api/v1/ota/{id}/{action}", a.audit("campaign.{action}", campaignTarget, a.auth(a.control)))
	mux.HandleFunc("DELETE /api/v1/ota/{id}", a.audit("campaign.abort", campaignTarget, a.auth(func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.AbortCampaign(r.Context(), r.PathValue("id"))
		a.reply(w, c, err)
	})))
	mux.HandleFunc("POST /api/v1/messages", a.audit("message.send", nil, a.auth(a.send)))
	a.consoleRoutes(mux)
	a.historyRoutes(mux)
	a.registryRoutes(mux)
	a.rolloutRoutes(mux)
	return mux
}

type api struct {
	svc         fleet.Service
	cfg         Config
	uploadSlots chan struct{} // one token per upload in progress
	streams     chan struct{} // one token per event stream open
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *api) auth(h http.HandlerFunc) http.HandlerFunc {
	if a.cfg.Token == "" {
		return h
	}
	return RequireToken(a.cfg.Token, h).ServeHTTP
}

// RequireToken serves h only to requests with "Authorization: Bearer
// <token>", and 401 to the others (e.g. for /metrics).
func RequireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasToken(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshfleet"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <http.token from the gateway config>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hasToken(r *http.Request, token string) bool {
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":"encoding response failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// reply writes v, or the error with the status code its kind deserves.
func (a *api) reply(w http.ResponseWriter, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	writeError(w, StatusOf(err), err.Error())
}

// StatusOf maps a fleet error to an HTTP status.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fleet.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, fleet.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, fleet.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, fleet.ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, fleet.ErrStoreFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, fleet.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func parseNodeID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("node id %q: want a decimal number 1..4294967295: %w", s, fleet.ErrInvalid)
	}
	return uint32(v), nil
}

func (a *api) node(w http.ResponseWriter, r *http.Request) {
	id, err := parseNodeID(r.PathValue("id"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	n, err := a.svc.Node(r.Context(), id)
	a.reply(w, n, err)
}

func (a *api) topology(w http.ResponseWriter, r *http.Request) {
	t, err := a.svc.Topology(r.Context())
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(t.AppendJSON(nil), '\n'))
}

func (a *api) images(w http.ResponseWriter, r *http.Request) {
	imgs, err := a.svc.Images(r.Context())
	a.reply(w, orEmpty(imgs), err)
}

// upload takes the image as the raw request body; metadata in the query:
// POST /api/v1/firmware?role=sensor&hardware=ESP32&version=1.2.3[&md5=hex]
// The body streams to the store: memory use does not grow with the image.
func (a *api) upload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	role, hw, ver := q.Get("role"), q.Get("hardware"), q.Get("version")
	if role == "" || hw == "" || ver == "" {
		writeError(w, http.StatusBadRequest, "role, hardware and version query parameters are required (body: the image bytes)")
		return
	}
	if err := checkImageBody(r); err != nil {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%v: the body must be the raw image bytes, e.g. curl --data-binary @fw.bin -H 'Content-Type: application/octet-stream' 'http://%s/api/v1/firmware?role=R&hardware=H&version=V'", err, r.Host))
		return
	}
	if r.ContentLength > a.cfg.MaxUploadSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("image of %d bytes is larger than the limit of %d bytes (firmware.max_upload_size)", r.ContentLength, a.cfg.MaxUploadSize))
		return
	}
	select {
	case a.uploadSlots <- struct{}{}:
		defer func() { <-a.uploadSlots }()
	default:
		w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfter))
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%d uploads are in progress, as many as firmware.max_concurrent_uploads allows; retry in %d seconds", a.cfg.MaxConcurrentUploads, uploadRetryAfter))
		return
	}
	body := &uploadBody{r: http.MaxBytesReader(w, r.Body, a.cfg.MaxUploadSize), rc: http.NewResponseController(w), idle: a.cfg.UploadIdleTimeout}
	up := fleet.ImageUpload{Role: role, Hardware: hw, Version: ver, MD5: strings.ToLower(q.Get("md5")), Size: max(r.ContentLength, 0)}
	img, existed, err := a.svc.AddImage(r.Context(), up, body)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("image larger than the limit of %d bytes (firmware.max_upload_size)", a.cfg.MaxUploadSize))
		case body.err != nil:
			writeError(w, http.StatusBadRequest, "reading upload: "+body.err.Error())
		default:
			a.reply(w, nil, err)
		}
		return
	}
	if existed {
		writeJSON(w, http.StatusOK, img) // the same image again: already stored
		return
	}
	writeJSON(w, http.StatusCreated, img)
}

// checkImageBody refuses request bodies that are not raw image bytes:
// forms, JSON, text and encoded bodies are what clients send by mistake
// (curl -F, -d or --data-binary without a Content-Type), and storing them
// would offer nodes garbage. No Content-Type at all is taken as raw bytes.
func checkImageBody(r *http.Request) error {
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return fmt.Errorf("a body with Content-Encoding %q is not supported", enc)
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("the Content-Type %q is not a media type", ct)
	}
	if mt != "application/octet-stream" {
		return fmt.Errorf("a body of type %s is not a firmware image", mt)
	}
	return nil
}

// uploadBody reads a request body, keeping the connection's read deadline
// idle ahead and remembering a read error, so the handler can tell a
// broken upload (400) from a failing store (500).
type uploadBody struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	err  error
}

func (b *uploadBody) Read(p []byte) (int, error) {
	// Not every ResponseWriter supports deadlines (tests' recorders);
	// then the server's own timeouts apply.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		// All read: storing may take longer than idle, and the server
		// watches the idle connection for the client going away.
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		b.err = err
	}
	return n, err
}

func (a *api) removeImage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.svc.RemoveImage(r.Context(), id); err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

// decodeStrict reads one JSON document, rejecting unknown fields and
// trailing data, so a typo in a request is an error, not a default.
func decodeStrict(r *http.Request, w http.ResponseWriter, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, fleet.ErrInvalid)
	}
	if dec.More() {
		return fmt.Errorf("request body: more than one JSON document: %w", fleet.ErrInvalid)
	}
	return nil
}

func (a *api) start(w http.ResponseWriter, r *http.Request) {
	var req fleet.CampaignRequest
	if err := decodeStrict(r, w, &req); err != nil {
		a.reply(w, nil, err)
		return
	}
	setAuditTarget(r, "image "+req.Image)
	c, err := a.svc.StartCampaign(r.Context(), req)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (a *api) campaign(w http.ResponseWriter, r *http.Request) {
	c, err := a.svc.Campaign(r.Context(), r.PathValue("id"))
	a.reply(w, c, err)
}

func (a *api) control(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var (
		c   fleet.Campaign
		err error
	)
	switch r.PathValue("action") {
	case "pause":
		c, err = a.svc.PauseCampaign(r.Context(), id)
	case "resume":
		c, err = a.svc.ResumeCampaign(r.Context(), id)
	case "abort":
		c, err = a.svc.AbortCampaign(r.Context(), id)
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: use pause, resume or abort", r.PathValue("action")))
		return
	}
	a.reply(w, c, err)
}

// RESTSender is the sender (fleet.WithSender) of every message into the
// mesh sent over REST.
const RESTSender = "rest"

// messageRequest sends an application message into the mesh.
type messageRequest struct {
	To  string `json:"to"` // "broadcast" or a decimal node id
	Msg string `json:"msg"`
}

func (a *api) send(w http.ResponseWriter, r *http.Request) {
	var req messageRequest
	if err := decodeStrict(r, w, &req); err != nil {
		a.reply(w, nil, err)
		return
	}
	setAuditTarget(r, req.To)
	// REST callers share one share of the airtime budget: the token does
	// not tell them apart.
	ctx := fleet.WithSender(r.Context(), RESTSender)
	var err error
	if req.To == "broadcast" {
		err = a.svc.SendBroadcast(ctx, req.Msg)
	} else {
		var id uint32
		if id, err = parseNodeID(req.To); err == nil {
			err = a.svc.SendSingle(ctx, id, req.Msg)
		}
	}
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent"})
}
