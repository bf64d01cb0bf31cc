package rest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// rolloutRoutes serves progressive rollouts.
func (a *api) rolloutRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/rollouts", a.auth(func(w http.ResponseWriter, r *http.Request) {
		rs, err := a.svc.ListRollouts(r.Context())
		a.reply(w, rs, err)
	}))
	mux.HandleFunc("POST /api/v1/rollouts", a.audit("rollout.start", nil, a.auth(a.startRollout)))
	mux.HandleFunc("GET /api/v1/rollouts/{id}", a.auth(func(w http.ResponseWriter, r *http.Request) {
		ro, err := a.svc.GetRollout(r.Context(), r.PathValue("id"))
		a.reply(w, ro, err)
	}))
	mux.HandleFunc("POST /api/v1/rollouts/{id}/{action}", a.audit("rollout.{action}", rolloutTarget, a.auth(a.controlRollout)))
}

func rolloutTarget(r *http.Request) string { return "rollout " + r.PathValue("id") }

func (a *api) startRollout(w http.ResponseWriter, r *http.Request) {
	var req fleet.RolloutRequest
	if err := decodeStrict(r, w, &req); err != nil {
		a.reply(w, nil, err)
		return
	}
	setAuditTarget(r, "image "+req.Image)
	ro, err := a.svc.StartRollout(r.Context(), req)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusCreated, ro)
}

// controlRollout runs pause, resume, approve or abort; abort takes an
// optional body {"reason": "...", "rollback": true}.
func (a *api) controlRollout(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if !slices.Contains(fleet.RolloutActions, action) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: use %s", action, strings.Join(fleet.RolloutActions, ", ")))
		return
	}
	var cmd fleet.RolloutCommand
	if r.ContentLength != 0 && r.Body != nil {
		if err := decodeStrict(r, w, &cmd); err != nil && !strings.Contains(err.Error(), "EOF") {
			a.reply(w, nil, err)
			return
		}
	}
	if cmd.Action != "" && cmd.Action != action {
		a.reply(w, nil, fmt.Errorf("body action %q differs from the path's %q: %w", cmd.Action, action, fleet.ErrInvalid))
		return
	}
	cmd.Action = action
	ro, err := a.svc.ControlRollout(r.Context(), r.PathValue("id"), cmd)
	a.reply(w, ro, err)
}
