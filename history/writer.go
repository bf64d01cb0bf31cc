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

// minute is the running aggregate of one node's samples in one minute,
// written as a rollup row when the node's samples move on to a later
// minute (or the minute is long past, or the store closes).
type minute struct {
	start int64 // unix seconds
	n     [numMetrics]int64
	sum   [numMetrics]int64
	min   [numMetrics]int64
	max   [numMetrics]int64
}

func (m *minute) add(v [numMetrics]int64, known [numMetrics]bool) {
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

// rowsPerInsert is how many samples one INSERT statement writes.
const rowsPerInsert = 64

// pruneEvery is how much data time passes between retention runs.
const pruneEvery = 10 * time.Minute

// writer is the writer goroutine's state: prepared statements, the open
// minutes, the nodes known.
type writer struct {
	s        *Store
	insert   *sql.Stmt
	insertN  *sql.Stmt // rowsPerInsert rows at once: far less overhead per row
	rollup   *sql.Stmt
	node     *sql.Stmt
	event    *sql.Stmt
	alert    *sql.Stmt
	campaign *sql.Stmt
	batch    []Sample
	open     map[uint32]*minute
	nodes    map[uint32]bool  // in the nodes table
	seen     map[uint32]int64 // newest sample per node since the latest retention run
	newest   int64            // newest time written, unix seconds: retention counts from it
	pruned   int64            // newest at the latest retention run

	args []any // of the sample inserts, kept between batches

	droppedLogged uint64 // samples dropped when the latest warning said so
	droppedLogAt  time.Time
}

func newWriter(s *Store) (*writer, error) {
	w := &writer{s: s, open: map[uint32]*minute{}, nodes: map[uint32]bool{}, seen: map[uint32]int64{}}
	cols := make([]string, 0, numMetrics)
	for _, m := range metrics {
		cols = append(cols, m.col)
	}
	var rcols, sets []string
	for _, m := range metrics {
		c := m.col
		rcols = append(rcols, c+"_n", c+"_sum", c+"_min", c+"_max")
		sets = append(sets, fmt.Sprintf("%[1]s_n = %[1]s_n + excluded.%[1]s_n, %[1]s_sum = %[1]s_sum + excluded.%[1]s_sum, "+
			"%[1]s_min = CASE WHEN %[1]s_n = 0 THEN excluded.%[1]s_min WHEN excluded.%[1]s_n = 0 THEN %[1]s_min ELSE min(%[1]s_min, excluded.%[1]s_min) END, "+
			"%[1]s_max = CASE WHEN %[1]s_n = 0 THEN excluded.%[1]s_max WHEN excluded.%[1]s_n = 0 THEN %[1]s_max ELSE max(%[1]s_max, excluded.%[1]s_max) END", c))
	}
	row := `(?, ?` + strings.Repeat(", ?", numMetrics) + `)`
	prep := []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&w.insert, `INSERT OR REPLACE INTO samples (node, t, ` + strings.Join(cols, ", ") + `) VALUES ` + row},
		{&w.insertN, `INSERT OR REPLACE INTO samples (node, t, ` + strings.Join(cols, ", ") + `) VALUES ` + row + strings.Repeat(", "+row, rowsPerInsert-1)},
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
	for _, st := range []*sql.Stmt{w.insert, w.insertN, w.rollup, w.node, w.event, w.alert, w.campaign} {
		if st != nil {
			st.Close()
		}
	}
}

// write stores one batch in one transaction.
func (w *writer) write(batch []Sample, recs []record, final bool) error {
	ctx := context.Background()
	tx, err := w.s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insert, insertN, rollup := tx.Stmt(w.insert), tx.Stmt(w.insertN), tx.Stmt(w.rollup)
	const width = 2 + numMetrics
	args := w.args[:0]
	newNodes := map[uint32]int64{}
	var rollups uint64
	for i := range batch {
		x := &batch[i]
		t := x.T.Unix()
		v, known := x.values()
		args = append(args, int64(x.Node), t)
		for j := range v {
			if known[j] {
				args = append(args, v[j])
			} else {
				args = append(args, nil)
			}
		}
		if len(args) == rowsPerInsert*width {
			if _, err := insertN.Exec(args...); err != nil {
				return err
			}
			args = args[:0]
		}
		start := t - t%60
		m := w.open[x.Node]
		if m != nil && m.start != start {
			if err := writeRollup(rollup, x.Node, m); err != nil {
				return err
			}
			rollups++
			m = nil
		}
		if m == nil {
			m = &minute{start: start}
			w.open[x.Node] = m
		}
		m.add(v, known)
		if !w.nodes[x.Node] {
			newNodes[x.Node] = t
		}
		w.seen[x.Node] = max(w.seen[x.Node], t)
		w.newest = max(w.newest, t)
	}
	for i := 0; i < len(args); i += width {
		if _, err := insert.Exec(args[i : i+width]...); err != nil {
			return err
		}
	}
	w.args = args[:0]
	// Minutes no sample will join any more (the node went quiet), or all
	// of them when the store closes.
	for id, m := range w.open {
		if final || m.start+120 <= w.newest {
			if err := writeRollup(rollup, id, m); err != nil {
				return err
			}
			rollups++
			delete(w.open, id)
		}
	}
	node := tx.Stmt(w.node)
	for id, t := range newNodes {
		if _, err := node.Exec(int64(id), t, t); err != nil {
			return err
		}
	}
	var events uint64
	for _, r := range recs {
		if err := w.writeRecord(tx, r); err != nil {
			return err
		}
		events++
	}
	pruned := final || w.newest-w.pruned >= int64(pruneEvery/time.Second)
	if pruned {
		if err := w.prune(tx, node); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		// The open minutes already written are gone with the batch: the
		// rollups of that minute miss these samples, as the raw rows do.
		return err
	}
	for id := range newNodes {
		w.nodes[id] = true
	}
	if pruned {
		w.pruned = w.newest
		clear(w.seen)
	}
	w.s.rollupsWritten.Add(rollups)
	w.s.eventsWritten.Add(events)
	return nil
}

// gone reports that node has no row in the nodes table any more.
func (w *writer) gone(tx *sql.Tx, node uint32) bool {
	var n int
	return tx.QueryRow(`SELECT count(*) FROM nodes WHERE node = ?`, int64(node)).Scan(&n) == nil && n == 0
}

func writeRollup(st *sql.Stmt, node uint32, m *minute) error {
	args := make([]any, 0, 2+4*numMetrics)
	args = append(args, int64(node), m.start)
	for i := range numMetrics {
		if m.n[i] == 0 {
			args = append(args, 0, 0, nil, nil)
			continue
		}
		args = append(args, m.n[i], m.sum[i], m.min[i], m.max[i])
	}
	_, err := st.Exec(args...)
	return err
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
		if _, err := node.Exec(int64(id), t, t); err != nil {
			return err
		}
	}
	raw := w.newest - int64(w.s.opt.RawRetention/time.Second)
	roll := w.newest - int64(w.s.opt.RollupRetention/time.Second)
	for id := range w.nodes {
		if _, err := tx.Exec(`DELETE FROM samples WHERE node = ? AND t < ?`, int64(id), raw); err != nil {
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
	if _, err := tx.Exec(`DELETE FROM nodes WHERE last < ?`, roll); err != nil {
		return err
	}
	for id := range w.nodes {
		if t, ok := w.seen[id]; ok && t < roll || !ok && w.gone(tx, id) {
			delete(w.nodes, id)
		}
	}
	return nil
}
