// Package registry is the gateway's device registry: per node what an
// operator says about it (a friendly name, tags, notes) and what the
// gateway has seen of it (role and hardware as it reports them, when it
// was first and last heard from, which firmware it ran and when).
//
// It is plain data with bounds: the gateway feeds it what the status
// collector knows (Observe), applies operators' changes (Patch, Forget),
// and saves it (MarshalJSON) atomically under its state_dir. It does no
// I/O of its own.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meshfleet/meshfleet/fleet"
)

// Limits bound the registry; every field has a default.
type Limits struct {
	MaxNodes    int // entries (default 10000)
	MaxName     int // bytes of a name (default 64)
	MaxNotes    int // bytes of the notes (default 1024)
	MaxTags     int // tags per node (default 16)
	MaxTag      int // bytes of a tag (default 32)
	MaxFirmware int // firmware records kept per node, the newest (default 20)
}

// DefaultLimits are the bounds the gateway uses.
var DefaultLimits = Limits{MaxNodes: 10000, MaxName: 64, MaxNotes: 1024, MaxTags: 16, MaxTag: 32, MaxFirmware: 20}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	for _, f := range []struct{ v, def *int }{{&l.MaxNodes, &d.MaxNodes}, {&l.MaxName, &d.MaxName}, {&l.MaxNotes, &d.MaxNotes},
		{&l.MaxTags, &d.MaxTags}, {&l.MaxTag, &d.MaxTag}, {&l.MaxFirmware, &d.MaxFirmware}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return l
}

// Entry is one node's registry entry.
type Entry struct {
	ID        uint32                 `json:"node_id"`
	Name      string                 `json:"name,omitempty"`
	Tags      []string               `json:"tags,omitempty"`
	Notes     string                 `json:"notes,omitempty"`
	Role      string                 `json:"role,omitempty"`
	Hardware  string                 `json:"hardware,omitempty"`
	FirstSeen time.Time              `json:"first_seen"`
	LastSeen  time.Time              `json:"last_seen,omitzero"`
	Firmware  []fleet.FirmwareRecord `json:"firmware,omitempty"`
}

// operated: an operator said something about the node, so it is never
// dropped to make room.
func (e *Entry) operated() bool { return e.Name != "" || len(e.Tags) > 0 || e.Notes != "" }

func (e Entry) clone() Entry {
	e.Tags = slices.Clone(e.Tags)
	e.Firmware = slices.Clone(e.Firmware)
	return e
}

// Sighting is what the gateway knows of a node at one moment.
type Sighting struct {
	ID uint32
	// At is when the node was last heard from; zero: not yet (a node
	// known only from the layout).
	At                     time.Time
	Role, Hardware         string
	FirmwareVersion, FwMD5 string
}

// Errors of Patch; each also wraps the fleet error a caller maps to a
// response.
var (
	ErrFull = fmt.Errorf("device registry full: %w", fleet.ErrConflict)
)

// Registry is the device registry. It is safe for concurrent use.
type Registry struct {
	lim Limits

	mu      sync.Mutex
	entries map[uint32]*Entry
	dirty   bool // an entry came, went or changed
	touched bool // only when nodes were last seen changed
}

// New returns an empty registry with limits l (zero fields: defaults).
func New(l Limits) *Registry {
	return &Registry{lim: l.withDefaults(), entries: map[uint32]*Entry{}}
}

// Limits are the registry's bounds.
func (r *Registry) Limits() Limits { return r.lim }

// Observe records sightings at now: a node not in the registry gets an
// entry, first seen when it was heard from (else now); role, hardware and
// firmware follow what the node reports. It returns how many new nodes
// found no room (the registry is full of nodes operators named).
func (r *Registry) Observe(now time.Time, seen []Sighting) (refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ev evictions
	for _, s := range seen {
		at := s.At
		e := r.entries[s.ID]
		if e == nil {
			if !r.makeRoomWith(&ev) {
				refused++
				continue
			}
			first := at
			if first.IsZero() {
				first = now
			}
			e = &Entry{ID: s.ID, FirstSeen: first.UTC()}
			r.entries[s.ID] = e
			r.dirty = true
		}
		if !at.IsZero() && at.After(e.LastSeen) {
			e.LastSeen = at.UTC()
			r.touched = true
		}
		if s.Role != "" && (s.Role != e.Role || s.Hardware != e.Hardware) {
			e.Role, e.Hardware = s.Role, s.Hardware
			r.dirty = true
		}
		if s.FirmwareVersion != "" || s.FwMD5 != "" {
			when := at
			if when.IsZero() {
				when = now
			}
			r.noteFirmwareLocked(e, s.FirmwareVersion, s.FwMD5, when.UTC())
		}
	}
	return refused
}

func (r *Registry) noteFirmwareLocked(e *Entry, version, md5 string, at time.Time) {
	if n := len(e.Firmware); n > 0 {
		last := &e.Firmware[n-1]
		if last.Version == version && last.MD5 == md5 {
			if at.After(last.LastSeen) {
				last.LastSeen = at
				r.touched = true
			}
			return
		}
	}
	e.Firmware = append(e.Firmware, fleet.FirmwareRecord{Version: version, MD5: md5, FirstSeen: at, LastSeen: at})
	if over := len(e.Firmware) - r.lim.MaxFirmware; over > 0 {
		e.Firmware = slices.Delete(e.Firmware, 0, over)
	}
	r.dirty = true
}

// makeRoomLocked makes room for one more entry, dropping the one heard
// from longest ago that no operator named, tagged or annotated; false
// when every entry is.
func (r *Registry) makeRoomLocked() bool {
	var ev evictions
	return r.makeRoomWith(&ev)
}

// evictions are the entries a full registry may drop, oldest last, found
// once for all the new nodes of one Observe: a scan of every entry for
// each new node made a gateway with more nodes than MaxNodes spend its
// CPU here (meshfleet bench gateway).
type evictions struct {
	listed     bool
	candidates []evictable
}

type evictable struct {
	e        *Entry
	lastSeen time.Time // when listed: an entry seen since is no longer a candidate
}

func (r *Registry) makeRoomWith(ev *evictions) bool {
	if len(r.entries) < r.lim.MaxNodes {
		return true
	}
	if !ev.listed {
		ev.listed = true
		for _, e := range r.entries {
			if !e.operated() {
				ev.candidates = append(ev.candidates, evictable{e, e.LastSeen})
			}
		}
		// Oldest last, ties by id as before: the next to drop is popped
		// from the end.
		slices.SortFunc(ev.candidates, func(a, b evictable) int {
			if c := b.lastSeen.Compare(a.lastSeen); c != 0 {
				return c
			}
			return int(int64(b.e.ID) - int64(a.e.ID))
		})
	}
	for len(ev.candidates) > 0 {
		c := ev.candidates[len(ev.candidates)-1]
		ev.candidates = ev.candidates[:len(ev.candidates)-1]
		if r.entries[c.e.ID] != c.e || c.e.operated() || !c.e.LastSeen.Equal(c.lastSeen) {
			continue // forgotten, named or seen since it was listed
		}
		delete(r.entries, c.e.ID)
		r.dirty = true
		return true
	}
	return false
}

// Get returns node id's entry.
func (r *Registry) Get(id uint32) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok {
		return Entry{}, false
	}
	return e.clone(), true
}

// All returns every entry, by node id.
func (r *Registry) All() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.clone())
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmpID(a.ID, b.ID) })
	return out
}

func cmpID(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Patch applies p to node id's entry, making one (first seen at now) if
// the node has none: the caller knows the node exists. Bad fields are
// refused with an error naming the field and the bound (fleet.ErrInvalid),
// a name another node has with fleet.ErrConflict, and a new entry in a
// full registry with ErrFull.
func (r *Registry) Patch(now time.Time, id uint32, p fleet.NodePatch) (Entry, error) {
	name, tags, notes, err := r.check(p)
	if err != nil {
		return Entry{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != nil && *name != "" {
		for _, e := range r.entries {
			if e.ID != id && strings.EqualFold(e.Name, *name) {
				return Entry{}, fmt.Errorf("name %q is node %d's already; names are unique (case does not count): %w", *name, e.ID, fleet.ErrConflict)
			}
		}
	}
	e := r.entries[id]
	if e == nil {
		if !r.makeRoomLocked() {
			return Entry{}, fmt.Errorf("%w: %d nodes, every one named, tagged or annotated; forget dead nodes first (DELETE /api/v1/nodes/{id})", ErrFull, r.lim.MaxNodes)
		}
		e = &Entry{ID: id, FirstSeen: now.UTC()}
		r.entries[id] = e
	}
	if name != nil {
		e.Name = *name
	}
	if tags != nil {
		e.Tags = tags
	}
	if notes != nil {
		e.Notes = *notes
	}
	r.dirty = true
	return e.clone(), nil
}

// check validates p; tags come back without duplicates, in the order given.
func (r *Registry) check(p fleet.NodePatch) (name *string, tags []string, notes *string, err error) {
	if p.Name == nil && p.Tags == nil && p.Notes == nil {
		return nil, nil, nil, fmt.Errorf("nothing to change: give name, tags or notes: %w", fleet.ErrInvalid)
	}
	if p.Name != nil {
		if err := checkText("name", *p.Name, r.lim.MaxName, false); err != nil {
			return nil, nil, nil, err
		}
		if *p.Name != strings.TrimSpace(*p.Name) {
			return nil, nil, nil, fmt.Errorf("name %q: no leading or trailing spaces: %w", *p.Name, fleet.ErrInvalid)
		}
		name = p.Name
	}
	if p.Notes != nil {
		if err := checkText("notes", *p.Notes, r.lim.MaxNotes, true); err != nil {
			return nil, nil, nil, err
		}
		notes = p.Notes
	}
	if p.Tags != nil {
		tags = []string{}
		for _, t := range *p.Tags {
			if err := CheckTag(t, r.lim.MaxTag); err != nil {
				return nil, nil, nil, err
			}
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		if len(tags) > r.lim.MaxTags {
			return nil, nil, nil, fmt.Errorf("tags: %d tags, at most %d per node: %w", len(tags), r.lim.MaxTags, fleet.ErrInvalid)
		}
	}
	return name, tags, notes, nil
}

func checkText(field, s string, limit int, newlines bool) error {
	if len(s) > limit {
		return fmt.Errorf("%s: %d bytes, at most %d: %w", field, len(s), limit, fleet.ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8: %w", field, fleet.ErrInvalid)
	}
	for _, c := range s {
		if unicode.IsControl(c) && !(newlines && (c == '\n' || c == '\t')) {
			return fmt.Errorf("%s: control character %U not allowed: %w", field, c, fleet.ErrInvalid)
		}
	}
	return nil
}

// CheckTag accepts a tag of 1..limit letters, digits and . _ - : /
// (limit <= 0: the default), so that tags read the same in a URL, a
// topic and a shell.
func CheckTag(t string, limit int) error {
	if limit <= 0 {
		limit = DefaultLimits.MaxTag
	}
	if t == "" || len(t) > limit {
		return fmt.Errorf("tag %q: 1..%d characters: %w", t, limit, fleet.ErrInvalid)
	}
	for _, c := range t {
		if c > unicode.MaxASCII || !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("._-:/", c)) {
			return fmt.Errorf("tag %q: only letters, digits and . _ - : / (ASCII): %w", t, fleet.ErrInvalid)
		}
	}
	return nil
}

// Forget drops node id's entry; false if it had none.
func (r *Registry) Forget(id uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[id]; !ok {
		return false
	}
	delete(r.entries, id)
	r.dirty = true
	return true
}

// Select returns the nodes having any of tags and those named names (case
// does not count), by id. A tag no node has or a name no node has is an
// error naming it (fleet.ErrInvalid): a campaign for a typo would update
// nothing, or the wrong nodes.
func (r *Registry) Select(tags, names []string) ([]uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	picked := map[uint32]bool{}
	for _, t := range tags {
		found := false
		for _, e := range r.entries {
			if slices.Contains(e.Tags, t) {
				picked[e.ID], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("tag %q: no node has it: %w", t, fleet.ErrInvalid)
		}
	}
	for _, n := range names {
		found := false
		for _, e := range r.entries {
			if e.Name != "" && strings.EqualFold(e.Name, n) {
				picked[e.ID], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("name %q: no node has it: %w", n, fleet.ErrInvalid)
		}
	}
	out := make([]uint32, 0, len(picked))
	for id := range picked {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// Changes reports what changed since MarshalJSON last ran: entries
// (changed: they came, went, or what they say changed) or only when nodes
// were last seen (touched), which a caller may save less often.
func (r *Registry) Changes() (changed, touched bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dirty, r.touched
}

// Unsaved marks the registry changed again: saving what MarshalJSON
// returned failed.
func (r *Registry) Unsaved() {
	r.mu.Lock()
	r.dirty = true
	r.mu.Unlock()
}

// saved is the registry's file format.
type saved struct {
	Version int     `json:"version"`
	Nodes   []Entry `json:"nodes"`
}

const fileVersion = 1

// MarshalJSON is the registry as its state file holds it.
func (r *Registry) MarshalJSON() ([]byte, error) {
	r.mu.Lock()
	r.dirty, r.touched = false, false
	r.mu.Unlock()
	return json.Marshal(saved{Version: fileVersion, Nodes: r.All()})
}

// Restore replaces the registry's entries with those of data (from
// MarshalJSON). Entries beyond the limits are refused with an error, not
// cut: the file was written by a gateway with other limits or by hand.
func (r *Registry) Restore(data []byte) error {
	var s saved
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if s.Version != fileVersion {
		return fmt.Errorf("version %d, this gateway reads version %d", s.Version, fileVersion)
	}
	if len(s.Nodes) > r.lim.MaxNodes {
		return fmt.Errorf("%d nodes, at most %d", len(s.Nodes), r.lim.MaxNodes)
	}
	entries := map[uint32]*Entry{}
	for i := range s.Nodes {
		e := s.Nodes[i]
		if e.ID == 0 {
			return errors.New("an entry without node_id")
		}
		if _, dup := entries[e.ID]; dup {
			return fmt.Errorf("node %d listed twice", e.ID)
		}
		if _, _, _, err := r.check(fleet.NodePatch{Name: &e.Name, Tags: &e.Tags, Notes: &e.Notes}); err != nil {
			return fmt.Errorf("node %d: %w", e.ID, err)
		}
		if len(e.Firmware) > r.lim.MaxFirmware {
			e.Firmware = e.Firmware[len(e.Firmware)-r.lim.MaxFirmware:]
		}
		entries[e.ID] = &e
	}
	r.mu.Lock()
	r.entries, r.dirty, r.touched = entries, false, false
	r.mu.Unlock()
	return nil
}
