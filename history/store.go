// Package history keeps what the gateway saw over time in one SQLite
// file: per-node status samples with 1-minute rollups, events (topology,
// nodes joining and leaving, alerts, OTA campaigns and per-node outcomes,
// operator actions), the alerts and the campaigns themselves.
//
// It is fed from the gateway's node loop and must never slow it down:
// AddSample, AddEvent, AddAlert and AddCampaign only queue; one writer
// goroutine takes the queue every FlushInterval and writes, in one
// transaction with prepared statements into a database in WAL mode, the
// events and each node's minutes that ended: one row of the node's raw
// samples (chunk.go) and one rollup row a node and minute, so 1,000
// nodes at 1 Hz are 2,000 rows a minute. The minute in progress is held
// in memory until it ends (Sync and Close write it). A full sample queue
// drops samples (counted in Stats); events are kept.
//
// Time is the caller's: every record carries its own time (the gateway's
// clock, virtual on a simulated mesh), and retention counts back from the
// newest time written, so a simulated day can run in minutes.
//
// Queries are bounded (a time range, at most MaxPoints points or
// MaxLimit rows) and validate their parameters (fleet.ErrInvalid). A
// database that cannot be used (corrupt, locked by another program,
// unwritable) makes Open, a query or Err return an error wrapping
// fleet.ErrHistoryUnavailable.
package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"github.com/meshfleet/meshfleet/fleet"
)

// Options tune a Store. Zero fields take the defaults.
type Options struct {
	// RawRetention keeps raw samples this long (default 48 h);
	// RollupRetention keeps 1-minute rollups, events, alerts and
	// campaigns this long (default 30 days).
	RawRetention    time.Duration
	RollupRetention time.Duration
	// QueueSize is how many samples wait for the writer at most (default
	// 65536: a minute of 1,000 nodes at 1 Hz); more are dropped.
	QueueSize int
	// FlushInterval is how often the writer takes the queue and writes
	// what is ready (default 1 s); BatchSize queued samples wake it
	// sooner (default 4096).
	FlushInterval time.Duration
	BatchSize     int
	// BusyTimeout is how long a write waits for a lock another program
	// holds on the file before it fails (default 2 s).
	BusyTimeout time.Duration
	Logger      *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.RawRetention <= 0 {
		o.RawRetention = 48 * time.Hour
	}
	if o.RollupRetention <= 0 {
		o.RollupRetention = 30 * 24 * time.Hour
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 65536
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 4096
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// maxPendingRecords bounds the events, alerts and campaigns waiting for
// the writer. They are never dropped while the database works (they are
// few); only a writer failing for long drops the oldest (counted).
const maxPendingRecords = 100_000

// maxConns is the most connections open at once: the writer's and
// queries'; more queries wait for one (bounded by their request).
const maxConns = 4

// Stats count what the store did since Open.
type Stats struct {
	SamplesWritten uint64 // samples written (in their minute's chunk)
	SamplesDropped uint64 // the queue was full, or their batch failed
	RollupsWritten uint64 // node-minutes written or merged (a chunk and a rollup row each)
	EventsWritten  uint64 // events, alert and campaign records
	EventsDropped  uint64 // the writer failed for long (maxPendingRecords)
	Batches        uint64 // transactions committed
	WriteErrors    uint64 // batches that failed
	Queued         int    // samples waiting now
}

// Store is an open history database.
type Store struct {
	opt  Options
	path string
	db   *sql.DB
	log  *slog.Logger

	samples chan Sample
	kick    chan struct{}
	syncReq chan syncRequest
	batch   []Sample // the writer's, reused
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	pending []record
	err     error // the latest write's, nil once one works again

	samplesWritten, samplesDropped, rollupsWritten atomic.Uint64
	eventsWritten, eventsDropped                   atomic.Uint64
	batches, writeErrors                           atomic.Uint64

	w *writer // the writer goroutine's own state

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the database at path (":memory:" for one in
// memory) and starts its writer. A file that is not a history database,
// is corrupt, or is locked by another program is refused with an error
// wrapping fleet.ErrHistoryUnavailable.
func Open(path string, opt Options) (*Store, error) {
	opt = opt.withDefaults()
	s := &Store{opt: opt, path: path, log: opt.Logger,
		samples: make(chan Sample, opt.QueueSize), kick: make(chan struct{}, 1), syncReq: make(chan syncRequest),
		stop: make(chan struct{}), done: make(chan struct{})}
	db, err := sql.Open("sqlite", dsn(path, opt.BusyTimeout))
	if err != nil {
		return nil, s.unavailable(err)
	}
	if path == ":memory:" {
		db.SetMaxOpenConns(1) // every connection would have its own database
	} else {
		db.SetMaxOpenConns(maxConns) // bounds the page caches and concurrent queries
	}
	s.db = db
	if err := s.init(); err != nil {
		db.Close()
		return nil, s.unavailable(err)
	}
	w, err := newWriter(s)
	if err != nil {
		db.Close()
		return nil, s.unavailable(err)
	}
	s.w = w
	go s.run()
	return s, nil
}

func dsn(path string, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "synchronous(normal)")
	// 16 MiB of page cache a connection (SQLite's default is 2): the
	// index pages a minute's 1,000 node rows go to stay in memory.
	q.Add("_pragma", "cache_size(-16384)")
	q.Set("_txlock", "immediate")
	if path == ":memory:" {
		return ":memory:?" + q.Encode()
	}
	q.Add("_pragma", "journal_mode(wal)")
	return "file:" + path + "?" + q.Encode()
}

func (s *Store) unavailable(err error) error {
	return fmt.Errorf("%w: %s: %w", fleet.ErrHistoryUnavailable, s.path, err)
}

// schemaVersion is written into a new database and checked on open.
const schemaVersion = 1

func schema() []string {
	var roll strings.Builder
	for _, m := range metrics {
		fmt.Fprintf(&roll, ", %[1]s_n INTEGER NOT NULL, %[1]s_sum INTEGER NOT NULL, %[1]s_min INTEGER, %[1]s_max INTEGER", m.col)
	}
	return []string{
		`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		// One row per node and minute (t: its start, unix seconds), n
		// samples in data (chunk.go); (node, t) is unique, so a node's
		// range is one index walk.
		`CREATE TABLE IF NOT EXISTS samples (node INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (node, t))`,
		// t: the minute's start, unix seconds; per metric the count of
		// known values, their sum, min and max.
		`CREATE TABLE IF NOT EXISTS rollups (node INTEGER NOT NULL, t INTEGER NOT NULL` + roll.String() + `, PRIMARY KEY (node, t)) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS nodes (node INTEGER PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL)`,
		// t: unix milliseconds.
		`CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, t INTEGER NOT NULL, kind TEXT NOT NULL, node INTEGER, summary TEXT NOT NULL, data TEXT)`,
		`CREATE INDEX IF NOT EXISTS events_t ON events (t)`,
		`CREATE INDEX IF NOT EXISTS events_node_t ON events (node, t)`,
		`CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, node INTEGER NOT NULL, raised INTEGER NOT NULL, updated INTEGER NOT NULL, doc TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised)`,
		`CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, started INTEGER NOT NULL, updated INTEGER NOT NULL, doc TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS campaigns_started ON campaigns (started)`,
	}
}

// init creates the tables and proves the file writable now: a locked or
// read-only file fails here, not on the first batch.
func (s *Store) init() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.BusyTimeout+10*time.Second)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range schema() {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var v string
	switch err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema'`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema', ?)`, fmt.Sprint(schemaVersion)); err != nil {
			return err
		}
	case err != nil:
		return err
	case v != fmt.Sprint(schemaVersion):
		return fmt.Errorf("schema version %s, this gateway knows %d", v, schemaVersion)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES ('opened', ?)`, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	return tx.Commit()
}

// AddSample queues a sample and never blocks: with the queue full the
// sample is dropped (Stats.SamplesDropped) and AddSample reports false.
func (s *Store) AddSample(x Sample) bool {
	select {
	case s.samples <- x:
		if len(s.samples) >= s.opt.BatchSize {
			s.wake()
		}
		return true
	default:
		s.samplesDropped.Add(1)
		return false
	}
}

func (s *Store) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// AddEvent queues an event; e.T is its time, e.Kind one of
// fleet.HistoryEventKinds.
func (s *Store) AddEvent(e fleet.HistoryEvent) { s.addRecord(record{event: &e}) }

// AddAlert records an alert in its current state; t is the gateway's
// time. A raised or cleared alert is also an "alert" event.
func (s *Store) AddAlert(a fleet.Alert, t time.Time) {
	s.addRecord(record{alert: &a, t: t})
	if a.State == "raised" || a.State == "cleared" {
		data, _ := jsonMarshal(a)
		s.addRecord(record{event: &fleet.HistoryEvent{T: t, Kind: "alert", NodeID: a.NodeID,
			Summary: fmt.Sprintf("%s %s %s: %s", a.Severity, a.Type, a.State, a.Message), Data: data}})
	}
}

// AddCampaign records a campaign in its current state (per-node outcomes
// included); t is the gateway's time.
func (s *Store) AddCampaign(c fleet.Campaign, t time.Time) { s.addRecord(record{campaign: &c, t: t}) }

func (s *Store) addRecord(r record) {
	s.mu.Lock()
	if len(s.pending) >= maxPendingRecords {
		s.pending = s.pending[1:]
		s.eventsDropped.Add(1)
	}
	s.pending = append(s.pending, r)
	s.mu.Unlock()
	s.wake()
}

type syncRequest struct {
	all  bool
	done chan struct{}
}

// Sync waits until everything queued before it is written (or failed),
// the minutes in progress included (a minute written in parts is merged).
func (s *Store) Sync(ctx context.Context) error { return s.sync(ctx, true) }

// Drain waits until the writer has taken the queued samples, leaving the
// minutes in progress to be written when they end, as the writer does on
// its own: for a producer that must not drop (a benchmark).
func (s *Store) Drain(ctx context.Context) error { return s.sync(ctx, false) }

func (s *Store) sync(ctx context.Context, all bool) error {
	done := make(chan struct{})
	select {
	case s.syncReq <- syncRequest{all: all, done: done}:
	case <-s.done:
		return errors.New("history: store closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err is the latest write's error (wrapping fleet.ErrHistoryUnavailable),
// nil when it worked.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{SamplesWritten: s.samplesWritten.Load(), SamplesDropped: s.samplesDropped.Load(),
		RollupsWritten: s.rollupsWritten.Load(), EventsWritten: s.eventsWritten.Load(), EventsDropped: s.eventsDropped.Load(),
		Batches: s.batches.Load(), WriteErrors: s.writeErrors.Load(), Queued: len(s.samples)}
}

// Close writes what is queued, the open minute rollups included, and
// closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.path != ":memory:" {
			s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Rows are the row counts of a history database.
type Rows struct {
	Samples, Rollups, Events int64
}

// CountRows counts the rows of the history database at path (a full
// scan: for benchmarks and tools, not for a running gateway).
func CountRows(path string) (Rows, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return Rows{}, err
	}
	defer db.Close()
	var r Rows
	for _, c := range []struct {
		dst   *int64
		table string
	}{{&r.Samples, "samples"}, {&r.Rollups, "rollups"}, {&r.Events, "events"}} {
		if err := db.QueryRow(`SELECT count(*) FROM ` + c.table).Scan(c.dst); err != nil {
			return r, fmt.Errorf("%s: %w", path, err)
		}
	}
	return r, nil
}

// run is the writer goroutine: it writes a batch every FlushInterval, or
// sooner when BatchSize samples or a record wait.
func (s *Store) run() {
	defer close(s.done)
	defer s.w.close()
	t := time.NewTicker(s.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flush(true)
			return
		case req := <-s.syncReq:
			s.flush(req.all)
			close(req.done)
			continue
		case <-t.C:
		case <-s.kick:
		}
		s.flush(false)
	}
}

// flush takes every queued sample into its minute and writes the
// finished minutes and every record in one transaction; all also writes
// the minutes in progress.
func (s *Store) flush(all bool) {
	n := len(s.samples)
	batch := s.batch[:0]
	for range n {
		batch = append(batch, <-s.samples)
	}
	s.batch = batch
	s.w.take(batch)
	s.mu.Lock()
	recs := s.pending
	s.pending = nil
	s.mu.Unlock()
	written, lost, err := s.w.write(recs, all)
	s.mu.Lock()
	prev := s.err
	if err != nil {
		s.err = s.unavailable(err)
		// Records wait for the next batch; samples are lost.
		s.pending = append(recs, s.pending...)
		if over := len(s.pending) - maxPendingRecords; over > 0 {
			s.pending = s.pending[over:]
			s.eventsDropped.Add(uint64(over))
		}
	} else {
		s.err = nil
	}
	s.mu.Unlock()
	if err != nil {
		s.writeErrors.Add(1)
		s.samplesDropped.Add(lost)
		if prev == nil {
			s.log.Error("history write failed; samples are dropped until it works again", "path", s.path, "err", err, "samples", lost)
		}
		return
	}
	if written > 0 || len(recs) > 0 {
		s.batches.Add(1)
	}
	s.samplesWritten.Add(written)
	if d := s.samplesDropped.Load(); d > s.w.droppedLogged && time.Since(s.w.droppedLogAt) >= time.Minute {
		s.log.Warn("history queue full: samples dropped (events are kept)", "dropped_total", d, "queue_size", s.opt.QueueSize)
		s.w.droppedLogged, s.w.droppedLogAt = d, time.Now()
	}
	if prev != nil {
		s.log.Info("history writes work again", "path", s.path)
	}
}
