package history

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// Query bounds.
const (
	// DefaultRange is the time range of a query without one.
	DefaultRange = 24 * time.Hour
	// DefaultPoints is about how many points a series without a step has.
	DefaultPoints = 1500
	// MaxPoints is the most steps a series query may span.
	MaxPoints = 10_000
	// DefaultLimit and MaxLimit bound the rows of the event, alert and
	// campaign queries.
	DefaultLimit = 100
	MaxLimit     = 1000
)

// niceSteps are the steps a series without one picks from: the smallest
// giving at most DefaultPoints points.
var niceSteps = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", fleet.ErrInvalid, fmt.Sprintf(format, args...))
}

// timeRange applies the defaults (the DefaultRange up to now) and checks
// the range.
func timeRange(from, to, now time.Time) (time.Time, time.Time, error) {
	if to.IsZero() {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-DefaultRange)
	}
	if !from.Before(to) {
		return from, to, invalid("from %s is not before to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	return from, to, nil
}

// ready is nil when queries may run: the database opened and its latest
// write worked.
func (s *Store) ready() error {
	return s.Err()
}

// Series answers fleet.History.NodeHistory; now is the gateway's time
// (the default range ends there). Steps that are whole minutes read the
// 1-minute rollups, others the raw samples (kept RawRetention); the
// minute in progress is in neither until it ends.
func (s *Store) Series(ctx context.Context, q fleet.SeriesQuery, now time.Time) (fleet.Series, error) {
	m, ok := metricByName(q.Metric)
	if !ok {
		return fleet.Series{}, invalid("metric %q: not one of %s", q.Metric, strings.Join(fleet.HistoryMetrics, ", "))
	}
	from, to, err := timeRange(q.From, q.To, now)
	if err != nil {
		return fleet.Series{}, err
	}
	step := q.Step
	span := to.Sub(from)
	if step == 0 {
		step = niceSteps[len(niceSteps)-1]
		for _, st := range niceSteps {
			if span/st <= DefaultPoints {
				step = st
				break
			}
		}
	}
	if step < time.Second || step%time.Second != 0 {
		return fleet.Series{}, invalid("step %s: want whole seconds, at least 1s", step)
	}
	if n := (span + step - 1) / step; n > MaxPoints {
		return fleet.Series{}, invalid("step %s over %s is %d points, at most %d: choose a larger step or a shorter range", step, span, n, MaxPoints)
	}
	if err := s.ready(); err != nil {
		return fleet.Series{}, err
	}
	st := int64(step / time.Second)
	lo, hi := from.Unix(), to.Unix()
	out := fleet.Series{NodeID: q.Node, Metric: m.name, From: from.UTC(), To: to.UTC(), StepS: st, Points: []fleet.Point{}}
	// Buckets are aligned to multiples of the step, so charts keep their
	// points as the range moves; the first takes in from's whole step.
	first := lo - mod(lo, st)
	if st%60 == 0 {
		err = s.rollupSeries(ctx, &out, m, q.Node, first, hi)
	} else {
		err = s.rawSeries(ctx, &out, m, q.Node, first, hi)
	}
	if err != nil {
		return fleet.Series{}, s.unavailable(err)
	}
	return out, nil
}

func mod(a, b int64) int64 { return ((a % b) + b) % b }

func (s *Store) rollupSeries(ctx context.Context, out *fleet.Series, m metric, node uint32, lo, hi int64) error {
	st := out.StepS
	c := m.col
	v := fmt.Sprintf("CAST(sum(%[1]s_sum) AS REAL) / sum(%[1]s_n)", c)
	if m.sum {
		v = fmt.Sprintf("sum(%s_sum)", c)
	}
	query := fmt.Sprintf(`SELECT (t / ?) * ? AS b, %s, min(%s_min), max(%s_max) FROM rollups WHERE node = ? AND t >= ? AND t < ? AND %s_n > 0 GROUP BY b ORDER BY b`, v, c, c, c)
	rows, err := s.db.QueryContext(ctx, query, st, st, int64(node), lo, hi)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var p fleet.Point
		var v, lo, hi float64
		if err := rows.Scan(&p.T, &v, &lo, &hi); err != nil {
			return err
		}
		p.V, p.Min, p.Max = v*m.scale, lo*m.scale, hi*m.scale
		out.Points = append(out.Points, p)
	}
	return rows.Err()
}

// rawSeries aggregates the samples of the chunks overlapping [lo, hi).
func (s *Store) rawSeries(ctx context.Context, out *fleet.Series, m metric, node uint32, lo, hi int64) error {
	st := out.StepS
	idx := -1
	for i, x := range metrics {
		if x.name == m.name {
			idx = i
		}
	}
	type acc struct {
		n, sum, min, max int64
	}
	buckets := map[int64]*acc{}
	rows, err := s.db.QueryContext(ctx, `SELECT t, data FROM samples WHERE node = ? AND t > ? AND t < ? ORDER BY t`, int64(node), lo-60, hi)
	if err != nil {
		return err
	}
	defer rows.Close()
	var data []byte
	for rows.Next() {
		var start int64
		if err := rows.Scan(&start, &data); err != nil {
			return err
		}
		err := decodeChunk(data, func(x *rawSample) {
			t := start + int64(x.off)
			if t < lo || t >= hi || x.known&(1<<idx) == 0 {
				return
			}
			v := x.v[idx]
			b := t - mod(t, st)
			a := buckets[b]
			if a == nil {
				buckets[b] = &acc{n: 1, sum: v, min: v, max: v}
				return
			}
			a.n++
			a.sum += v
			a.min = min(a.min, v)
			a.max = max(a.max, v)
		})
		if err != nil {
			return fmt.Errorf("node %d minute %d: %w", node, start, err)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	keys := make([]int64, 0, len(buckets))
	for b := range buckets {
		keys = append(keys, b)
	}
	slices.Sort(keys)
	for _, b := range keys {
		a := buckets[b]
		v := float64(a.sum) / float64(a.n)
		if m.sum {
			v = float64(a.sum)
		}
		out.Points = append(out.Points, fleet.Point{T: b, V: v * m.scale, Min: float64(a.min) * m.scale, Max: float64(a.max) * m.scale})
	}
	return nil
}

func limitOf(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > MaxLimit:
		return 0, invalid("limit %d: want 1 to %d", n, MaxLimit)
	}
	return n, nil
}

// throughNow makes a range that ends by default (at now) take in what
// happened at now itself: ranges end before to, and an event or alert of
// this very moment belongs in the answer. Times are kept to the millisecond.
func throughNow(to time.Time, asked time.Time) time.Time {
	if asked.IsZero() {
		return to.Add(time.Millisecond)
	}
	return to
}

// Events answers fleet.History.Events; now is the gateway's time.
func (s *Store) Events(ctx context.Context, q fleet.EventQuery, now time.Time) ([]fleet.HistoryEvent, error) {
	if q.Kind != "" && !slices.Contains(fleet.HistoryEventKinds, q.Kind) {
		return nil, invalid("kind %q: not one of %s", q.Kind, strings.Join(fleet.HistoryEventKinds, ", "))
	}
	from, to, err := timeRange(q.From, q.To, now)
	if err != nil {
		return nil, err
	}
	to = throughNow(to, q.To)
	limit, err := limitOf(q.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	query := `SELECT t, kind, node, summary, data FROM events WHERE t >= ? AND t < ?`
	args := []any{from.UnixMilli(), to.UnixMilli()}
	if q.Node != 0 {
		query += ` AND node = ?`
		args = append(args, int64(q.Node))
	}
	if q.Kind != "" {
		query += ` AND kind = ?`
		args = append(args, q.Kind)
	}
	query += ` ORDER BY t DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.unavailable(err)
	}
	defer rows.Close()
	out := []fleet.HistoryEvent{}
	for rows.Next() {
		var e fleet.HistoryEvent
		var t int64
		var node sql.NullInt64
		var data sql.NullString
		if err := rows.Scan(&t, &e.Kind, &node, &e.Summary, &data); err != nil {
			return nil, s.unavailable(err)
		}
		e.T = time.UnixMilli(t).UTC()
		e.NodeID = uint32(node.Int64)
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.unavailable(err)
	}
	return out, nil
}

// Alerts answers fleet.History.AlertHistory: the alerts raised before to
// and still active or last changed after from, newest first.
func (s *Store) Alerts(ctx context.Context, q fleet.EventQuery, now time.Time) ([]fleet.Alert, error) {
	from, to, err := timeRange(q.From, q.To, now)
	if err != nil {
		return nil, err
	}
	to = throughNow(to, q.To)
	limit, err := limitOf(q.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	query := `SELECT doc FROM alerts WHERE raised < ? AND updated >= ?`
	args := []any{to.UnixMilli(), from.UnixMilli()}
	if q.Node != 0 {
		query += ` AND node = ?`
		args = append(args, int64(q.Node))
	}
	query += ` ORDER BY raised DESC, id DESC LIMIT ?`
	args = append(args, limit)
	out := []fleet.Alert{}
	err = s.docs(ctx, query, args, func(doc []byte) error {
		var a fleet.Alert
		if err := json.Unmarshal(doc, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// Campaigns answers fleet.History.CampaignHistory: the latest campaigns
// by start, newest first.
func (s *Store) Campaigns(ctx context.Context, limit int) ([]fleet.Campaign, error) {
	limit, err := limitOf(limit)
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	out := []fleet.Campaign{}
	err = s.docs(ctx, `SELECT doc FROM campaigns ORDER BY started DESC, id DESC LIMIT ?`, []any{limit}, func(doc []byte) error {
		var c fleet.Campaign
		if err := json.Unmarshal(doc, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func (s *Store) docs(ctx context.Context, query string, args []any, each func([]byte) error) error {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return s.unavailable(err)
	}
	defer rows.Close()
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return s.unavailable(err)
		}
		if err := each(doc); err != nil {
			return s.unavailable(fmt.Errorf("stored document: %w", err))
		}
	}
	if err := rows.Err(); err != nil {
		return s.unavailable(err)
	}
	return nil
}
