package slot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Storage is the little file system a Store needs: one flat directory of
// named files. Dir keeps them in a real directory, Memory in memory (with a
// model of what survives a crash). Implementations need not be safe for
// concurrent use; the Store serialises access.
type Storage interface {
	// Open opens an existing file for reading and writing. A missing file
	// is an error wrapping fs.ErrNotExist.
	Open(name string) (File, error)
	// Create creates a file, or truncates an existing one, for reading
	// and writing.
	Create(name string) (File, error)
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// Remove deletes a file; a missing file is an error wrapping
	// fs.ErrNotExist.
	Remove(name string) error
	// Sync makes the directory's entries (creates, renames, removes)
	// durable.
	Sync() error
}

// File is an open file of a Storage.
type File interface {
	io.ReaderAt
	io.WriterAt
	Size() (int64, error)
	// Sync makes the file's contents durable.
	Sync() error
	Close() error
}

// checkName keeps every name a plain file name inside the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`+"\x00") {
		return fmt.Errorf("slot: invalid file name %q", name)
	}
	return nil
}

// Dir is a Storage in a directory of the real file system.
type Dir struct {
	path string
}

// NewDir returns the Storage in directory path, creating it (mode 0700) if
// needed.
func NewDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("slot: %s is not a directory", path)
	}
	return &Dir{path: path}, nil
}

// Path returns the real path of a file, for example to execute a slot image.
func (d *Dir) Path(name string) string { return filepath.Join(d.path, name) }

func (d *Dir) open(name string, flag int) (File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(d.path, name), flag, 0o600)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Open implements Storage.
func (d *Dir) Open(name string) (File, error) { return d.open(name, os.O_RDWR) }

// Create implements Storage.
func (d *Dir) Create(name string) (File, error) {
	return d.open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
}

// Rename implements Storage.
func (d *Dir) Rename(oldname, newname string) error {
	if err := errors.Join(checkName(oldname), checkName(newname)); err != nil {
		return err
	}
	return os.Rename(filepath.Join(d.path, oldname), filepath.Join(d.path, newname))
}

// Remove implements Storage.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return os.Remove(filepath.Join(d.path, name))
}

// Sync implements Storage.
func (d *Dir) Sync() error {
	f, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// OpKind names a mutating storage operation.
type OpKind string

// Operations seen by a fault hook.
const (
	OpCreate  OpKind = "create"
	OpWrite   OpKind = "write"
	OpSync    OpKind = "sync"    // File.Sync
	OpRename  OpKind = "rename"  // Name is the new name
	OpRemove  OpKind = "remove"  //
	OpSyncDir OpKind = "syncdir" // Storage.Sync
)

// Op is one mutating storage operation about to happen.
type Op struct {
	Kind OpKind
	Name string
}

func (o Op) String() string { return string(o.Kind) + " " + o.Name }

// WithFaults wraps s so that hook is asked before every mutating operation;
// if it returns an error the operation does not happen and the error is
// returned. Tests use it to stop a store at every step of a sequence (a
// simulated power cut), then Memory.Crash and reopen.
func WithFaults(s Storage, hook func(Op) error) Storage {
	return &faulty{s: s, hook: hook}
}

type faulty struct {
	s    Storage
	hook func(Op) error
}

func (f *faulty) Open(name string) (File, error) {
	file, err := f.s.Open(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, name: name, hook: f.hook}, nil
}

func (f *faulty) Create(name string) (File, error) {
	if err := f.hook(Op{OpCreate, name}); err != nil {
		return nil, err
	}
	file, err := f.s.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, name: name, hook: f.hook}, nil
}

func (f *faulty) Rename(oldname, newname string) error {
	if err := f.hook(Op{OpRename, newname}); err != nil {
		return err
	}
	return f.s.Rename(oldname, newname)
}

func (f *faulty) Remove(name string) error {
	if err := f.hook(Op{OpRemove, name}); err != nil {
		return err
	}
	return f.s.Remove(name)
}

func (f *faulty) Sync() error {
	if err := f.hook(Op{OpSyncDir, ""}); err != nil {
		return err
	}
	return f.s.Sync()
}

type faultyFile struct {
	File
	name string
	hook func(Op) error
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.hook(Op{OpWrite, f.name}); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Sync() error {
	if err := f.hook(Op{OpSync, f.name}); err != nil {
		return err
	}
	return f.File.Sync()
}

// readFile reads a whole file that must not exceed limit bytes.
func readFile(s Storage, name string, limit int64) ([]byte, error) {
	f, err := s.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d expected", name, size, limit)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return buf, nil
}

// writeAtomic replaces name with data: write a temporary file, sync it,
// rename it over name, sync the directory. A crash at any point leaves
// either the old or the new content under name.
func writeAtomic(s Storage, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := s.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.Rename(tmp, name); err != nil {
		return err
	}
	return s.Sync()
}

// removeIfExists removes name if it exists and reports whether it did.
// It looks first, so that nothing is written when there is nothing to do.
func removeIfExists(s Storage, name string) (bool, error) {
	f, err := s.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		f.Close()
	}
	if err := s.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}
