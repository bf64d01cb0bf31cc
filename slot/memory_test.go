package slot

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"testing"
)

func readAll(t *testing.T, s Storage, name string) []byte {
	t.Helper()
	b, err := readFile(s, name, 1<<30)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func TestMemoryDurability(t *testing.T) {
	m := NewMemory()
	f, _ := m.Create("synced")
	f.WriteAt([]byte("durable"), 0)
	f.Sync()
	m.Sync()
	f.WriteAt([]byte("LOST"), 0) // not synced
	g, _ := m.Create("unlinked")
	g.WriteAt([]byte("data"), 0)
	g.Sync() // contents synced, but the directory entry is not
	m.Crash()

	if got := readAll(t, m, "synced"); string(got) != "durable" {
		t.Errorf("synced file after crash = %q", got)
	}
	if _, err := m.Open("unlinked"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file created without directory sync survived: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, ErrCrashed) {
		t.Errorf("handle from before the crash: %v", err)
	}

	// A rename is durable only after a directory sync.
	writeAtomic(m, "a", []byte("old"))
	tmp, _ := m.Create("a.new")
	tmp.WriteAt([]byte("new"), 0)
	tmp.Sync()
	m.Rename("a.new", "a")
	m.Crash()
	if got := readAll(t, m, "a"); string(got) != "old" {
		t.Errorf("rename without directory sync survived: %q", got)
	}

	// Truncating an existing file is undone by a crash before its sync.
	f, _ = m.Create("a")
	if n, _ := f.Size(); n != 0 {
		t.Errorf("size after Create = %d", n)
	}
	m.Crash()
	if got := readAll(t, m, "a"); string(got) != "old" {
		t.Errorf("unsynced truncation survived: %q", got)
	}
}

func TestMemoryPages(t *testing.T) {
	m := NewMemory()
	f, _ := m.Create("f")
	// Sparse write across a page boundary, far from the start.
	data := bytes.Repeat([]byte{7}, 100)
	off := int64(3*pageSize - 50)
	f.WriteAt(data, off)
	if n, _ := f.Size(); n != off+100 {
		t.Fatalf("size %d", n)
	}
	buf := make([]byte, 200)
	n, err := f.ReadAt(buf, off-100)
	if n != 200 || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(buf[:100], make([]byte, 100)) || !bytes.Equal(buf[100:], data) {
		t.Errorf("read back %v", buf)
	}
	n, err = f.ReadAt(buf, off+50)
	if n != 50 || err != io.EOF {
		t.Errorf("read past the end = %d, %v", n, err)
	}
	if _, err := f.ReadAt(buf, off+100); err != io.EOF {
		t.Errorf("read at the end: %v", err)
	}
	// Copy on write: a write after a sync does not change the durable copy.
	f.Sync()
	m.Sync()
	f.WriteAt([]byte{9}, off)
	m.Crash()
	g, _ := m.Open("f")
	one := make([]byte, 1)
	g.ReadAt(one, off)
	if one[0] != 7 {
		t.Errorf("durable page changed by a later write: %d", one[0])
	}
	if _, err := g.WriteAt(one, -1); err == nil {
		t.Error("negative offset accepted")
	}
	g.Close()
	if _, err := g.ReadAt(one, 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if m.Size() != off+100 {
		t.Errorf("Memory.Size = %d", m.Size())
	}
}
