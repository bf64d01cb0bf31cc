package ota

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/meshfleet/meshfleet/slot"
)

// OriginFile is the file SlotStoreDir keeps in the slot directory: the
// Origin of the last switched image and the last rollback already
// reported, so that neither is lost nor repeated across process starts.
const OriginFile = "ota-origin.json"

// originFormat versions OriginFile so a future layout can be told apart.
const originFormat = 1

// maxOriginSize bounds what is read from OriginFile; the real content is a
// few hundred bytes.
const maxOriginSize = 4 << 10

// originRecord is the content of OriginFile.
type originRecord struct {
	Format int     `json:"format"`
	Origin *Origin `json:"origin,omitempty"`
	// RollbackReported is the time of the last rollback (slot.State.Last.At)
	// LastRollback has handed out for good.
	RollbackReported time.Time `json:"rollback_reported,omitzero"`
}

// SlotStoreDir is SlotStore for a slot.Store opened on directory dir
// (slot.OpenDir): it also implements OriginStore, keeping the Origin and
// the last rollback reported in OriginFile in dir, so a rollback or a
// confirmation is reported once, to its distributor, across restarts.
//
// A damaged OriginFile is treated as absent, with a warning on logger
// (nil discards): what it holds only routes and deduplicates reports, and
// refusing to start would stop the node from taking any update until
// someone removes the file by hand. The cost is at most one outcome
// reported again or with the next offer; the next write replaces the file.
func SlotStoreDir(s *slot.Store, dir string, logger *slog.Logger) Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &slotDirStore{slotStore: &slotStore{s: s}, path: filepath.Join(dir, OriginFile), log: logger}
	rec, err := readOrigin(a.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		logger.Warn("ota: origin file unusable, treated as absent", "file", a.path, "err", err)
	default:
		a.rec = rec
	}
	return a
}

type slotDirStore struct {
	*slotStore
	path string
	log  *slog.Logger
	rec  originRecord // as on disk, except a mark whose write failed
}

// readOrigin reads and validates the origin file at path.
func readOrigin(path string) (originRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return originRecord{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOriginSize+1))
	if err != nil {
		return originRecord{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxOriginSize {
		return originRecord{}, fmt.Errorf("%s is more than %d bytes", path, maxOriginSize)
	}
	return decodeOrigin(data)
}

// decodeOrigin parses and validates the content of an origin file.
func decodeOrigin(data []byte) (originRecord, error) {
	var rec originRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return originRecord{}, fmt.Errorf("decode origin: %w", err)
	}
	if rec.Format != originFormat {
		return originRecord{}, fmt.Errorf("origin format %d, want %d", rec.Format, originFormat)
	}
	if rec.Origin != nil && rec.Origin.Image == "" {
		return originRecord{}, errors.New("origin without an image")
	}
	return rec, nil
}

// writeOrigin replaces the origin file at path with rec: a temporary file,
// synced, renamed over it, then the directory synced, so a crash leaves
// the old or the new content.
func writeOrigin(path string, rec originRecord) error {
	rec.Format = originFormat
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode origin: %w", err)
	}
	data = append(data, '\n')
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write origin: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write origin: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write origin: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write origin: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write origin: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write origin: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write origin: sync directory: %w", err)
	}
	return nil
}

// SetOrigin implements OriginStore. The origin is durable when it returns
// nil; on an error the previous one stays.
func (a *slotDirStore) SetOrigin(o Origin) error {
	rec := a.rec
	rec.Origin = &o
	if err := writeOrigin(a.path, rec); err != nil {
		return err
	}
	a.rec = rec
	return nil
}

// Origin implements OriginStore.
func (a *slotDirStore) Origin() (Origin, bool) {
	if a.rec.Origin == nil {
		return Origin{}, false
	}
	return *a.rec.Origin, true
}

// LastRollback implements Store. A rollback is handed out once, across
// restarts, except one whose Origin is known and not yet Reported: the
// receiver sends that to its distributor and marks the origin Reported,
// and until it has, every start hands it out again.
func (a *slotDirStore) LastRollback() (string, bool) {
	last := a.s.State().Last
	if last.State != slot.RolledBack || !last.At.After(a.rec.RollbackReported) {
		return "", false
	}
	md5 := last.Image.MD5
	if o := a.rec.Origin; o != nil && o.Image == md5 && !o.Reported {
		return md5, true
	}
	rec := a.rec
	rec.RollbackReported = last.At
	if err := writeOrigin(a.path, rec); err != nil {
		a.log.Warn("ota: record the rollback as reported; a later start reports it again", "image", md5, "err", err)
	}
	// Marked in memory in any case: this process reports it only once.
	a.rec.RollbackReported = last.At
	return md5, true
}
