package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// audit wraps a state-changing handler: after it ran, one audit line says
// who (the token, or anonymous when the API has none), from where, the
// action, its target and the result. action may name a path value in
// braces ("campaign.{action}"); target, if not nil, names the target from
// the request, and a handler may add to it with setAuditTarget once it has
// read the body. An id in a successful answer is added to the target.
func (a *api) audit(action string, target func(*http.Request) string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &auditRecorder{ResponseWriter: w}
		note := &auditNote{}
		if target != nil {
			note.target = target(r)
		}
		h(rec, r.WithContext(context.WithValue(r.Context(), auditKey{}, note)))
		name := action
		if i := strings.Index(name, "{"); i >= 0 {
			name = name[:i] + r.PathValue(strings.Trim(name[i:], "{}"))
		}
		var err error
		t := note.target
		if rec.status >= 400 {
			err = fmt.Errorf("%d %s", rec.status, rec.errorText())
		} else if id := rec.createdID(); id != "" && !strings.Contains(t, id) {
			t = strings.TrimSpace(t + " id " + id)
		}
		fleet.Audit(a.cfg.Logger, fleet.AuditAction{Via: "rest", Who: a.who(r), Remote: r.RemoteAddr, Action: name, Target: t, Err: err})
	}
}

func (a *api) who(r *http.Request) string {
	switch {
	case a.cfg.Token == "":
		return "anonymous"
	case hasToken(r, a.cfg.Token):
		return "token"
	}
	return "unauthenticated"
}

func imageTarget(r *http.Request) string {
	q := r.URL.Query()
	return q.Get("role") + "/" + q.Get("hardware") + "/" + q.Get("version")
}

func campaignTarget(r *http.Request) string { return "campaign " + r.PathValue("id") }

func imageIDTarget(r *http.Request) string { return "image " + r.PathValue("id") }

type auditKey struct{}

type auditNote struct{ target string }

// setAuditTarget adds to the target of the request's audit line.
func setAuditTarget(r *http.Request, target string) {
	if n, ok := r.Context().Value(auditKey{}).(*auditNote); ok {
		n.target = strings.TrimSpace(n.target + " " + target)
	}
}

// auditRecorder keeps the status and the start of the answer.
type auditRecorder struct {
	http.ResponseWriter
	status int
	head   bytes.Buffer
}

const auditHeadBytes = 4 << 10

func (r *auditRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *auditRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if room := auditHeadBytes - r.head.Len(); room > 0 {
		r.head.Write(p[:min(len(p), room)])
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushing) through the recorder.
func (r *auditRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *auditRecorder) errorText() string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.head.Bytes(), &e) == nil && e.Error != "" {
		return e.Error
	}
	return http.StatusText(r.status)
}

func (r *auditRecorder) createdID() string {
	var d struct {
		ID string `json:"id"`
	}
	json.Unmarshal(r.head.Bytes(), &d)
	return d.ID
}
