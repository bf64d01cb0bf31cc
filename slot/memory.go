package slot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"sync"
)

// ErrCrashed is returned by files opened before Memory.Crash.
var ErrCrashed = errors.New("slot: file handle from before a crash")

// pageSize is the unit of copy-on-write in Memory: after a Sync, writing one
// chunk copies one or two pages, not the whole file.
const pageSize = 4096

// Memory is an in-memory Storage for simulated nodes and tests. It models
// durability pessimistically, like a disk without a battery-backed cache:
// file contents survive Crash only as of the file's last Sync, and creates,
// renames and removes only as of the last Storage.Sync. Everything not
// synced is lost, so a missing sync shows up as lost data in tests.
//
// Memory is safe for concurrent use.
type Memory struct {
	mu      sync.Mutex
	epoch   int
	names   map[string]*inode // the directory as it is now
	durable map[string]*inode // the directory as of the last Sync
}

type inode struct {
	pages [][]byte // nil page reads as zeros
	owned []bool   // page may be written in place (not shared with the durable copy)
	size  int64

	durPages [][]byte
	durSize  int64
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{names: map[string]*inode{}, durable: map[string]*inode{}}
}

// Crash discards everything that was not made durable, as a power cut
// would. Files opened before the crash return ErrCrashed.
func (m *Memory) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	m.names = maps.Clone(m.durable)
	for _, ino := range m.names {
		ino.pages = slices.Clone(ino.durPages)
		ino.owned = make([]bool, len(ino.pages))
		ino.size = ino.durSize
	}
}

// Size returns the bytes held by the files currently in the directory.
func (m *Memory) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, ino := range m.names {
		n += ino.size
	}
	return n
}

// Open implements Storage.
func (m *Memory) Open(name string) (File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.names[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{m: m, ino: ino, epoch: m.epoch, name: name}, nil
}

// Create implements Storage.
func (m *Memory) Create(name string) (File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.names[name]
	if ok {
		// Truncate in place: the durable contents stay until a Sync.
		ino.pages, ino.owned, ino.size = nil, nil, 0
	} else {
		ino = &inode{}
		m.names[name] = ino
	}
	return &memFile{m: m, ino: ino, epoch: m.epoch, name: name}, nil
}

// Rename implements Storage.
func (m *Memory) Rename(oldname, newname string) error {
	if err := errors.Join(checkName(oldname), checkName(newname)); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.names[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(m.names, oldname)
	m.names[newname] = ino
	return nil
}

// Remove implements Storage.
func (m *Memory) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.names[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.names, name)
	return nil
}

// Sync implements Storage.
func (m *Memory) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.durable = maps.Clone(m.names)
	return nil
}

type memFile struct {
	m      *Memory
	ino    *inode
	epoch  int
	name   string
	closed bool
}

func (f *memFile) check() error {
	if f.closed {
		return fmt.Errorf("slot: %s: %w", f.name, fs.ErrClosed)
	}
	if f.epoch != f.m.epoch {
		return fmt.Errorf("%w: %s", ErrCrashed, f.name)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("slot: read %s: negative offset", f.name)
	}
	ino := f.ino
	if off >= ino.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), ino.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		page, in := int(pos/pageSize), int(pos%pageSize)
		k := min(pageSize-in, n-done)
		if pg := ino.pages[page]; pg != nil {
			copy(p[done:done+k], pg[in:in+k])
		} else {
			clear(p[done : done+k])
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("slot: write %s: negative offset", f.name)
	}
	ino := f.ino
	end := off + int64(len(p))
	if need := int((end + pageSize - 1) / pageSize); need > len(ino.pages) {
		ino.pages = append(ino.pages, make([][]byte, need-len(ino.pages))...)
		ino.owned = append(ino.owned, make([]bool, need-len(ino.owned))...)
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		page, in := int(pos/pageSize), int(pos%pageSize)
		k := min(pageSize-in, len(p)-done)
		switch {
		case ino.pages[page] == nil:
			ino.pages[page] = make([]byte, pageSize)
			ino.owned[page] = true
		case !ino.owned[page]:
			ino.pages[page] = slices.Clone(ino.pages[page])
			ino.owned[page] = true
		}
		copy(ino.pages[page][in:in+k], p[done:done+k])
		done += k
	}
	ino.size = max(ino.size, end)
	return len(p), nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return f.ino.size, nil
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	ino := f.ino
	ino.durPages = slices.Clone(ino.pages)
	ino.durSize = ino.size
	clear(ino.owned)
	return nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return fmt.Errorf("slot: %s: %w", f.name, fs.ErrClosed)
	}
	f.closed = true
	return nil
}
