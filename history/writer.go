package history

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// record is an event, an alert or a campaign waiting for the writer.
type record struct {
	t        time.Time
	event    *fleet.HistoryEvent
	alert    *fleet.Alert
	campaign *fleet.Campaign
}

func jsonMarshal(v any) (json.RawMessage, error) { return json.Marshal(v) }

// minute is one node's samples of one minute while it lasts, with their
// running aggregate: written as a chunk and a rollup row when the node's
// samples move on to a later minute (or the minute is long past, or Sync
// or Close asks for everything).
type minute struct {
	node  uint32
	start int64 // unix seconds
	raw   []rawSample
	n     [numMetrics]int64
	sum   [numMetrics]int64
	min   [numMetrics]int64
	max   [numMetrics]int64
}

func (m *minute) add(t int64, v [numMetrics]int64, known [numMetrics]bool) {
	m.raw = append(m.raw, rawSample{off: uint8(t - m.start), known: knownMask(known), v: v})
	for i := range v {
		if !known[i] {
			continue
		}
		if m.n[i] == 0 || v[i] < m.min[i] {
			m.min[i] = v[i]
		}
		if m.n[i] == 0 || v[i] > m.max[i] {
			m.max[i] = v[i]
		}
		m.n[i]++
		m.sum[i] += v[i]
	}
}

// Timing of the writer, in data time.
const (
	// pruneEvery is how much data time passes between retention runs.
	pruneEvery = 10 * time.Minute
	// quietAfter: the minute of a node that sent nothing since is written.
	quietAfter = 2 * time.Minute
)

// writer is the writer goroutine's state: prepared statements, the open
// minutes, the nodes known.
type writer struct {
	s        *Store
	chunk    *sql.Stmt
	rollup   *sql.Stmt
	node     *sql.Stmt
	event    *sql.Stmt
	alert    *sql.Stmt
	campaign *sql.Stmt
	open     map[uint32]*minute
	ready    []*minute        // closed minutes waiting for the next transaction
	nodes    map[uint32]bool  // in the nodes table
	seen     map[uint32]int64 // newest sample per node since the latest retention run
	newest   int64            // newest time written, unix seconds: retention counts from it
	pruned   int64            // newest at the latest retention run
	buf      []byte

	droppedLogged uint64 // samples dropped when the latest warning said so
	droppedLogAt  time.Time
}

func newWriter(s *Store) (*writer, error) {
	w := &writer{s: s, open: map[uint32]*minute{}, nodes: map[uint32]bool{}, seen: map[uint32]int64{}}
	var rcols, sets []string
	for _, m := range metrics {
		c := m.col
		rcols = append(rcols, c+"_n", c+"_sum", c+"_min", c+"_max")
		sets = append(sets, fmt.Sprintf("%[1]s_n = %[1]s_n + excluded.%[1]s_n, %[1]s_sum = %[1]s_sum + excluded.%[1]s_sum, "+
			"%[1]s_min = CASE WHEN %[1]s_n = 0 THEN excluded.%[1]s_min WHEN excluded.%[1]s_n = 0 THEN %[1]s_min ELSE min(%[1]s_min, excluded.%[1]s_min) END, "+
			"%[1]s_max = CASE WHEN %[1]s_n = 0 THEN excluded.%[1]s_max WHEN excluded.%[1]s_n = 0 THEN %[1]s_max ELSE max(%[1]s_max, excluded.%[1]s_max) END", c))
	}
	prep := []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&w.chunk, `INSERT INTO samples (node, t, n, data) VALUES (?, ?, ?, ?) ON CONFLICT (node, t) DO UPDATE SET n = n + excluded.n, data = data || excluded.data`},
		{&w.rollup, `INSERT INTO rollups (node, t, ` + strings.Join(rcols, ", ") + `) VALUES (?, ?` + strings.Repeat(", ?", 4*numMetrics) + `)` +
			` ON CONFLICT (node, t) DO UPDATE SET ` + strings.Join(sets, ", ")},
		{&w.node, `INSERT INTO nodes (node, first, last) VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET last = max(last, excluded.last)`},
		{&w.event, `INSERT INTO events (t, kind, node, summary, data) VALUES (?, ?, ?, ?, ?)`},
		{&w.alert, `INSERT OR REPLACE INTO alerts (id, node, raised, updated, doc) VALUES (?, ?, ?, ?, ?)`},
		{&w.campaign, `INSERT INTO campaigns (id, started, updated, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, doc = excluded.doc`},
	}
	for _, p := range prep {
		st, err := s.db.Prepare(p.q)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.dst = st
	}
	rows, err := s.db.Query(`SELECT node FROM nodes`)
	if err != nil {
		w.close()
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id uint32
		if err := rows.Scan(&id); err != nil {
			w.close()
			return nil, err
		}
		w.nodes[id] = true
	}
	if err := s.db.QueryRow(`SELECT coalesce(max(last), 0) FROM nodes`).Scan(&w.newest); err != nil {
		w.close()
		return nil, err
	}
	w.pruned = w.newest
	return w, rows.Err()
}

func (w *writer) close() {
	for _, st := range []*sql.Stmt{w.chunk, w.rollup, w.node, w.event, w.alert, w.campaign} {
		if st != nil {
			st.Close()
		}
	}
}

// take adds a batch of samples to their open minutes; minutes a sample
// moves on from are ready to be written.
func (w *writer) take(batch []Sample) {
	for i := range batch {
		x := &batch[i]
		t := x.T.Unix()
		start := t - t%60
		if t < 0 {
			continue // before 1970: not a time the gateway's clock gives
		}
		m := w.open[x.Node]
		if m != nil && m.start != start {
			w.ready = append(w.ready, m)
			m = nil
		}
		if m == nil {
			m = &minute{node: x.Node, start: start, raw: make([]rawSample, 0, 60)}
			w.open[x.Node] = m
		}
		v, known := x.values()
		m.add(t, v, known)
		w.seen[x.Node] = max(w.seen[x.Node], t)
		w.newest = max(w.newest, t)
	}
}

// write stores the ready minutes and recs in one transaction; all also
// writes the open minutes (Sync, Close), others those of nodes gone
// quiet. It returns the samples written, and those lost with a failed
// transaction.
func (w *writer) write(recs []record, all bool) (written, lost uint64, err error) {
	for id, m := range w.open {
		if all || m.start+int64(quietAfter/time.Second) <= w.newest {
			w.ready = append(w.ready, m)
			delete(w.open, id)
		}
	}
	prune := all || w.newest-w.pruned >= int64(pruneEvery/time.Second)
	if len(w.ready) == 0 && len(recs) == 0 && !prune {
		return 0, 0, nil
	}
	var n uint64
	for _, m := range w.ready {
		n += uint64(len(m.raw))
	}
	ready := w.ready
	w.ready = nil
	if err := w.commit(ready, recs, prune); err != nil {
		return 0, n, err
	}
	if prune {
		w.pruned = w.newest
		clear(w.seen)
	}
	w.s.rollupsWritten.Add(uint64(len(ready)))
	w.s.eventsWritten.Add(uint64(len(recs)))
	return n, 0, nil
}

func (w *writer) commit(ready []*minute, recs []record, prune bool) error {
	ctx := context.Background()
	tx, err := w.s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	chunk, rollup, node := tx.Stmt(w.chunk), tx.Stmt(w.rollup), tx.Stmt(w.node)
	args := make([]any, 0, 2+4*numMetrics)
	var newNodes []uint32
	for _, m := range ready {
		w.buf = appendSegment(w.buf[:0], m.raw)
		if _, err := chunk.Exec(int64(m.node), m.start, len(m.raw), w.buf); err != nil {
			return err
		}
		args = append(args[:0], int64(m.node), m.start)
		for i := range numMetrics {
			if m.n[i] == 0 {
				args = append(args, 0, 0, nil, nil)
				continue
			}
			args = append(args, m.n[i], m.sum[i], m.min[i], m.max[i])
		}
		if _, err := rollup.Exec(args...); err != nil {
			return err
		}
		if !w.nodes[m.node] {
			last := m.start + int64(m.raw[len(m.raw)-1].off)
			if _, err := node.Exec(int64(m.node), m.start, last); err != nil {
				return err
			}
			w.nodes[m.node] = true
			newNodes = append(newNodes, m.node)
		}
	}
	for _, r := range recs {
		if err := w.writeRecord(tx, r); err != nil {
			w.forget(newNodes)
			return err
		}
	}
	if prune {
		if err := w.prune(tx, node); err != nil {
			w.forget(newNodes)
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		w.forget(newNodes)
		return err
	}
	return nil
}

// forget undoes the nodes a failed transaction would have added.
func (w *writer) forget(ids []uint32) {
	for _, id := range ids {
		delete(w.nodes, id)
	}
}

func (w *writer) writeRecord(tx *sql.Tx, r record) error {
	switch {
	case r.event != nil:
		e := r.event
		var node, data any
		if e.NodeID != 0 {
			node = int64(e.NodeID)
		}
		if len(e.Data) > 0 {
			data = string(e.Data)
		}
		w.newest = max(w.newest, e.T.Unix())
		_, err := tx.Stmt(w.event).Exec(e.T.UnixMilli(), e.Kind, node, e.Summary, data)
		return err
	case r.alert != nil:
		a := r.alert
		doc, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.Stmt(w.alert).Exec(a.ID, int64(a.NodeID), a.Raised.UnixMilli(), r.t.UnixMilli(), string(doc))
		return err
	case r.campaign != nil:
		c := r.campaign
		doc, err := json.Marshal(c)
		if err != nil {
			return err
		}
		_, err = tx.Stmt(w.campaign).Exec(c.ID, c.Started.UnixMilli(), r.t.UnixMilli(), string(doc))
		return err
	}
	return nil
}

// prune deletes what is older than the retention, counted back from the
// newest time written (the gateway's clock, not the machine's). Samples
// go node by node, each a range of the (node, t) key.
func (w *writer) prune(tx *sql.Tx, node *sql.Stmt) error {
	for id, t := range w.seen {
		if w.nodes[id] {
			if _, err := node.Exec(int64(id), t, t); err != nil {
				return err
			}
		}
	}
	raw := w.newest - int64(w.s.opt.RawRetention/time.Second)
	roll := w.newest - int64(w.s.opt.RollupRetention/time.Second)
	for id := range w.nodes {
		// A chunk is kept while any of its minute is within the retention.
		if _, err := tx.Exec(`DELETE FROM samples WHERE node = ? AND t < ?`, int64(id), raw-59); err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM rollups WHERE node = ? AND t < ?`, int64(id), roll); err != nil {
			return err
		}
	}
	for _, q := range []string{`DELETE FROM events WHERE t < ?`, `DELETE FROM alerts WHERE updated < ?`, `DELETE FROM campaigns WHERE updated < ?`} {
		if _, err := tx.Exec(q, roll*1000); err != nil {
			return err
		}
	}
	rows, err := tx.Query(`SELECT node FROM nodes WHERE last < ?`, roll)
	if err != nil {
		return err
	}
	var gone []uint32
	for rows.Next() {
		var id uint32
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		gone = append(gone, id)
	}
	rows.Close()
	if _, err := tx.Exec(`DELETE FROM nodes WHERE last < ?`, roll); err != nil {
		return err
	}
	for _, id := range gone {
		delete(w.nodes, id)
	}
	return nil
}
