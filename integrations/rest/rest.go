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
	"net/http"
	"strconv"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// Config tunes the API.
type Config struct {
	Token         string // empty: no auth
	MaxUploadSize int64  // firmware upload limit in bytes
	Logger        *slog.Logger
}

// maxJSONBody bounds request documents other than firmware uploads.
const maxJSONBody = 1 << 20

// Handler returns the API mounted under /api/v1/ plus /healthz.
func Handler(svc fleet.Service, cfg Config) http.Handler {
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{svc: svc, cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /api/v1/summary", a.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, svc.Summary()) }))
	mux.HandleFunc("GET /api/v1/nodes", a.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, orEmpty(svc.Nodes())) }))
	mux.HandleFunc("GET /api/v1/nodes/{id}", a.auth(a.node))
	mux.HandleFunc("GET /api/v1/topology", a.auth(a.topology))
	mux.HandleFunc("GET /api/v1/alerts", a.auth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, orEmpty(svc.Alerts(r.URL.Query().Get("all") == "1" || r.URL.Query().Get("all") == "true")))
	}))
	mux.HandleFunc("GET /api/v1/firmware", a.auth(a.images))
	mux.HandleFunc("POST /api/v1/firmware", a.audit("image.add", imageTarget, a.auth(a.upload)))
	mux.HandleFunc("GET /api/v1/ota", a.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, orEmpty(svc.Campaigns())) }))
	mux.HandleFunc("POST /api/v1/ota", a.audit("campaign.start", nil, a.auth(a.start)))
	mux.HandleFunc("GET /api/v1/ota/{id}", a.auth(a.campaign))
	mux.HandleFunc("POST /api/v1/ota/{id}/{action}", a.audit("campaign.{action}", campaignTarget, a.auth(a.control)))
	mux.HandleFunc("DELETE /api/v1/ota/{id}", a.audit("campaign.abort", campaignTarget, a.auth(func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.AbortCampaign(r.PathValue("id"))
		a.reply(w, c, err)
	})))
	mux.HandleFunc("POST /api/v1/messages", a.audit("message.send", nil, a.auth(a.send)))
	return mux
}

type api struct {
	svc fleet.Service
	cfg Config
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
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
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
	n, err := a.svc.Node(id)
	a.reply(w, n, err)
}

func (a *api) topology(w http.ResponseWriter, r *http.Request) {
	t := a.svc.Topology()
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(t.AppendJSON(nil), '\n'))
}

func (a *api) images(w http.ResponseWriter, r *http.Request) {
	imgs, err := a.svc.Images()
	a.reply(w, orEmpty(imgs), err)
}

// upload takes the image as the raw request body; metadata in the query:
// POST /api/v1/firmware?role=sensor&hardware=ESP32&version=1.2.3[&md5=hex]
func (a *api) upload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	role, hw, ver := q.Get("role"), q.Get("hardware"), q.Get("version")
	if role == "" || hw == "" || ver == "" {
		writeError(w, http.StatusBadRequest, "role, hardware and version query parameters are required (body: the image bytes)")
		return
	}
	body := http.MaxBytesReader(w, r.Body, a.cfg.MaxUploadSize)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("image larger than the limit of %d bytes (firmware.max_upload_size)", a.cfg.MaxUploadSize))
			return
		}
		writeError(w, http.StatusBadRequest, "reading upload: "+err.Error())
		return
	}
	img, err := a.svc.AddImage(r.Context(), role, hw, ver, strings.ToLower(q.Get("md5")), data)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusCreated, img)
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
	c, err := a.svc.Campaign(r.PathValue("id"))
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
		c, err = a.svc.PauseCampaign(id)
	case "resume":
		c, err = a.svc.ResumeCampaign(id)
	case "abort":
		c, err = a.svc.AbortCampaign(id)
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: use pause, resume or abort", r.PathValue("action")))
		return
	}
	a.reply(w, c, err)
}

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
	var err error
	if req.To == "broadcast" {
		err = a.svc.SendBroadcast(r.Context(), req.Msg)
	} else {
		var id uint32
		if id, err = parseNodeID(req.To); err == nil {
			err = a.svc.SendSingle(r.Context(), id, req.Msg)
		}
	}
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent"})
}
