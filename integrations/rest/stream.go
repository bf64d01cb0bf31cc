package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// StreamConfig bounds GET /api/v1/stream, the Server-Sent Events the
// dashboard lives on.
type StreamConfig struct {
	// MaxClients is how many streams may be open at once (default 16);
	// more are refused with 503.
	MaxClients int
	// Interval is how often the summary and the nodes that changed are
	// sent (default 2 s).
	Interval time.Duration
	// WriteTimeout drops a client that does not take one event in this
	// long (default 10 s), so a stalled reader holds nothing for long.
	WriteTimeout time.Duration
	// Stop, when closed, ends every stream: http.Server.Shutdown waits
	// for handlers and does not end their requests, so the server's owner
	// closes it (RegisterOnShutdown).
	Stop <-chan struct{}
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.MaxClients <= 0 {
		c.MaxClients = 16
	}
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return c
}

// consoleRoutes are the routes the dashboard needs beyond the rest of the
// API; scripts may use them as well.
func (a *api) consoleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/stream", a.auth(a.stream))
	mux.HandleFunc("POST /api/v1/alerts/{id}/ack", a.audit("alert.ack", alertTarget, a.auth(a.ack)))
}

// nodesUpdate is the data of a "nodes" event: the node documents that
// changed since the last one (all of them when full) and the ids of nodes
// no longer listed.
type nodesUpdate struct {
	Full    bool         `json:"full"`
	Nodes   []fleet.Node `json:"nodes"`
	Removed []uint32     `json:"removed,omitempty"`
}

// stream serves the gateway's events (alert, progress, campaign, message:
// the fleet.Event field that is set, as its JSON) and, every Interval, a
// "summary" and a "nodes" event, until the client goes or the gateway
// stops. A slow client loses the oldest events (Service.Subscribe keeps a
// bounded buffer per subscriber) and one that takes no write for
// WriteTimeout is dropped.
func (a *api) stream(w http.ResponseWriter, r *http.Request) {
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%d event streams are open, as many as the gateway serves; retry in 5 seconds", a.cfg.Stream.MaxClients))
		return
	}
	ctx := r.Context()
	events := a.svc.Subscribe(ctx)
	out := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: a.cfg.Stream.WriteTimeout}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	w.WriteHeader(http.StatusOK)
	if out.send("hello", map[string]any{"interval_s": a.cfg.Stream.Interval.Seconds()}) != nil {
		return
	}
	sent := map[uint32][]byte{}
	full := true
	tick := time.NewTicker(a.cfg.Stream.Interval)
	defer tick.Stop()
	for {
		if full || out.due {
			// The periodic state; a failed read is skipped, the next tick asks again.
			out.due = false
			if s, err := a.svc.Summary(ctx); err == nil {
				if out.send("summary", s) != nil {
					return
				}
			}
			if nodes, err := a.svc.Nodes(ctx); err == nil {
				if out.send("nodes", changedNodes(sent, nodes, full)) != nil {
					return
				}
				full = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Stream.Stop:
			return
		case <-tick.C:
			out.due = true
		case ev, ok := <-events:
			if !ok {
				return
			}
			name, data := eventOf(ev)
			if name != "" && out.send(name, data) != nil {
				return
			}
		}
	}
}

// changedNodes is the update from what was sent (by id, as JSON) to
// nodes, and notes nodes as sent.
func changedNodes(sent map[uint32][]byte, nodes []fleet.Node, full bool) nodesUpdate {
	u := nodesUpdate{Full: full, Nodes: []fleet.Node{}}
	seen := make(map[uint32]bool, len(nodes))
	for _, n := range nodes {
		seen[n.ID] = true
		b, _ := json.Marshal(n)
		if full || !bytes.Equal(sent[n.ID], b) {
			u.Nodes = append(u.Nodes, n)
			sent[n.ID] = b
		}
	}
	for id := range sent {
		if !seen[id] {
			u.Removed = append(u.Removed, id)
			delete(sent, id)
		}
	}
	slices.Sort(u.Removed)
	return u
}

func eventOf(ev fleet.Event) (string, any) {
	switch {
	case ev.Alert != nil:
		return "alert", ev.Alert
	case ev.Progress != nil:
		return "progress", ev.Progress
	case ev.Campaign != nil:
		return "campaign", ev.Campaign
	case ev.Rollout != nil:
		return "rollout", ev.Rollout
	case ev.Message != nil:
		return "message", ev.Message
	}
	return "", nil
}

// sseWriter writes Server-Sent Events, each flushed at once and each
// within a write deadline.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	due     bool // the periodic state is to be sent
	buf     bytes.Buffer
	seq     uint64
}

func (s *sseWriter) send(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.seq++
	s.buf.Reset()
	// JSON from encoding/json has no raw newlines: one data line.
	s.buf.WriteString("event: " + name + "\nid: " + strconv.FormatUint(s.seq, 10) + "\ndata: ")
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	// Not every ResponseWriter has deadlines (tests' recorders).
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}
