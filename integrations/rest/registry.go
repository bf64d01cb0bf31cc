package rest

import (
	"fmt"
	"net/http"

	"github.com/meshfleet/meshfleet/fleet"
)

// registryRoutes serves the device registry: names, tags and notes of a
// node, forgetting a node, and its firmware history.
func (a *api) registryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PATCH /api/v1/nodes/{id}", a.audit("node.update", nodeTarget, a.auth(a.updateNode)))
	mux.HandleFunc("DELETE /api/v1/nodes/{id}", a.audit("node.forget", nodeTarget, a.auth(a.forgetNode)))
	mux.HandleFunc("GET /api/v1/nodes/{id}/firmware", a.auth(a.nodeFirmware))
}

func nodeTarget(r *http.Request) string { return "node " + r.PathValue("id") }

func (a *api) updateNode(w http.ResponseWriter, r *http.Request) {
	id, err := parseNodeID(r.PathValue("id"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	var p fleet.NodePatch
	if err := decodeStrict(r, w, &p); err != nil {
		a.reply(w, nil, err)
		return
	}
	n, err := a.svc.UpdateNode(r.Context(), id, p)
	a.reply(w, n, err)
}

func (a *api) forgetNode(w http.ResponseWriter, r *http.Request) {
	id, err := parseNodeID(r.PathValue("id"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	force := false
	switch v := r.URL.Query().Get("force"); v {
	case "", "0", "false":
	case "1", "true":
		force = true
	default:
		a.reply(w, nil, fmt.Errorf("force=%q: want 1 or true: %w", v, fleet.ErrInvalid))
		return
	}
	if force {
		setAuditTarget(r, "forced")
	}
	if err := a.svc.ForgetNode(r.Context(), id, force); err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint32{"forgotten": id})
}

func (a *api) nodeFirmware(w http.ResponseWriter, r *http.Request) {
	id, err := parseNodeID(r.PathValue("id"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	h, err := a.svc.NodeFirmware(r.Context(), id)
	a.reply(w, h, err)
}
