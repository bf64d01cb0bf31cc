package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/meshfleet/meshfleet/fleet"
)

// ackRequest is the optional body of POST /api/v1/alerts/{id}/ack: the
// operator's name. One token serves every operator, so the name is what
// they say; the record shows it beside how they authenticated.
type ackRequest struct {
	By string `json:"by,omitempty"`
}

// maxAckName bounds the operator's name in an acknowledgement.
const maxAckName = 64

func (a *api) ack(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		a.reply(w, nil, fmt.Errorf("request body: %v: %w", err, fleet.ErrInvalid))
		return
	}
	if len(bytes.TrimSpace(body)) > 0 { // the body is optional
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			a.reply(w, nil, fmt.Errorf("request body: want nothing or a JSON object with by, the operator's name: %w", fleet.ErrInvalid))
			return
		}
	}
	by := "rest " + a.who(r)
	if name := strings.TrimSpace(req.By); name != "" {
		if len(name) > maxAckName || strings.IndexFunc(name, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
			a.reply(w, nil, fmt.Errorf("by: want a printable name of at most %d bytes: %w", maxAckName, fleet.ErrInvalid))
			return
		}
		by = name + " (" + by + ")"
	}
	al, err := a.svc.AckAlert(r.Context(), r.PathValue("id"), by)
	a.reply(w, al, err)
}

func alertTarget(r *http.Request) string { return "alert " + r.PathValue("id") }
