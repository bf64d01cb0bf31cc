package rest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// historyRoutes serves the history (fleet.History): a node's metric over
// time, events, alerts and campaigns of the past. They answer 503
// "history unavailable: ..." while the history is off or its database
// cannot be used; the live routes are not affected.
func (a *api) historyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/nodes/{id}/history", a.auth(a.nodeHistory))
	mux.HandleFunc("GET /api/v1/events", a.auth(a.events))
	mux.HandleFunc("GET /api/v1/alerts/history", a.auth(a.alertHistory))
	mux.HandleFunc("GET /api/v1/ota/history", a.auth(a.campaignHistory))
}

// historyParams are the query parameters each history route takes;
// others are refused, so a misspelt one is not silently ignored.
var historyParams = map[string][]string{
	"node":      {"metric", "from", "to", "step"},
	"events":    {"from", "to", "node", "kind", "limit"},
	"alerts":    {"from", "to", "node", "limit"},
	"campaigns": {"limit"},
}

func badParam(format string, a ...any) error {
	return fmt.Errorf("%w: %s", fleet.ErrInvalid, fmt.Sprintf(format, a...))
}

// queryOf checks r's parameters against the route's and that none is
// given twice.
func queryOf(r *http.Request, route string) (url.Values, error) {
	q := r.URL.Query()
	known := historyParams[route]
	for k, vs := range q {
		if !slices.Contains(known, k) {
			return nil, badParam("unknown parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, badParam("parameter %q given %d times", k, len(vs))
		}
	}
	return q, nil
}

// parseTime reads RFC 3339 or unix seconds; "" is the zero time.
func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<40 {
			return time.Time{}, badParam("%s=%s: unix seconds out of range", name, s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badParam("%s=%q: want RFC 3339 (2026-12-07T10:00:00Z) or unix seconds", name, s)
	}
	return t, nil
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, badParam("limit=%q: want a positive number", s)
	}
	return n, nil
}

func parseOptionalNode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	id, err := parseNodeID(s)
	if err != nil {
		return 0, badParam("node=%q: want a node id (1..4294967295)", s)
	}
	return id, nil
}

// historyReply is reply with the history's own 503.
func (a *api) historyReply(w http.ResponseWriter, v any, err error) {
	if errors.Is(err, fleet.ErrHistoryUnavailable) {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	a.reply(w, v, err)
}

func (a *api) nodeHistory(w http.ResponseWriter, r *http.Request) {
	q, err := a.seriesQuery(r)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	s, err := a.svc.NodeHistory(r.Context(), q)
	a.historyReply(w, s, err)
}

func (a *api) seriesQuery(r *http.Request) (fleet.SeriesQuery, error) {
	id, err := parseNodeID(r.PathValue("id"))
	if err != nil {
		return fleet.SeriesQuery{}, err
	}
	p, err := queryOf(r, "node")
	if err != nil {
		return fleet.SeriesQuery{}, err
	}
	q := fleet.SeriesQuery{Node: id, Metric: p.Get("metric")}
	if q.Metric == "" {
		return q, badParam("metric is required, one of %s", strings.Join(fleet.HistoryMetrics, ", "))
	}
	if q.From, err = parseTime("from", p.Get("from")); err != nil {
		return q, err
	}
	if q.To, err = parseTime("to", p.Get("to")); err != nil {
		return q, err
	}
	if s := p.Get("step"); s != "" {
		if q.Step, err = time.ParseDuration(s); err != nil || q.Step <= 0 {
			if n, nerr := strconv.Atoi(s); nerr == nil && n > 0 {
				q.Step = time.Duration(n) * time.Second
			} else {
				return q, badParam("step=%q: want a duration like 60s, 1m or 1h", s)
			}
		}
	}
	return q, nil
}

func (a *api) eventQuery(r *http.Request, route string) (fleet.EventQuery, error) {
	p, err := queryOf(r, route)
	if err != nil {
		return fleet.EventQuery{}, err
	}
	var q fleet.EventQuery
	if q.From, err = parseTime("from", p.Get("from")); err != nil {
		return q, err
	}
	if q.To, err = parseTime("to", p.Get("to")); err != nil {
		return q, err
	}
	if q.Node, err = parseOptionalNode(p.Get("node")); err != nil {
		return q, err
	}
	if q.Limit, err = parseLimit(p.Get("limit")); err != nil {
		return q, err
	}
	q.Kind = p.Get("kind")
	return q, nil
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	q, err := a.eventQuery(r, "events")
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	evs, err := a.svc.Events(r.Context(), q)
	a.historyReply(w, map[string]any{"events": orEmpty(evs)}, err)
}

func (a *api) alertHistory(w http.ResponseWriter, r *http.Request) {
	q, err := a.eventQuery(r, "alerts")
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	as, err := a.svc.AlertHistory(r.Context(), q)
	a.historyReply(w, map[string]any{"alerts": orEmpty(as)}, err)
}

func (a *api) campaignHistory(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "campaigns")
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	limit, err := parseLimit(p.Get("limit"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	cs, err := a.svc.CampaignHistory(r.Context(), limit)
	a.historyReply(w, map[string]any{"campaigns": orEmpty(cs)}, err)
}
