package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixedNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func openTest(t *testing.T, opts *Options) *Store {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var sensor = Meta{Role: "sensor", Hardware: "ESP32", Version: "1.0.0"}

func TestAddGetReadAll(t *testing.T) {
	s := openTest(t, nil)
	img, err := s.Add(context.Background(), strings.NewReader("abc"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// RFC 1321 test suite: MD5("abc").
	if img.MD5 != "900150983cd24fb0d6963f7d28e17f72" {
		t.Errorf("MD5 = %s", img.MD5)
	}
	if img.Size != 3 || img.Role != "sensor" || img.Hardware != "ESP32" || img.Version != "1.0.0" {
		t.Errorf("image = %+v", img)
	}
	if !img.Added.Equal(fixedNow) {
		t.Errorf("Added = %v, want %v", img.Added, fixedNow)
	}
	// First 12 hex digits of SHA-256("sensor\x00ESP32\x00" + md5), computed
	// with Python's hashlib.
	if img.ID != "2c874ae99e58" {
		t.Errorf("ID = %q, want 2c874ae99e58", img.ID)
	}
	got, err := s.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.ID || got.MD5 != img.MD5 || !got.Added.Equal(img.Added) {
		t.Errorf("Get = %+v, want %+v", got, img)
	}
	data, err := s.ReadAll(img.ID)
	if err != nil || string(data) != "abc" {
		t.Errorf("ReadAll = %q, %v", data, err)
	}
	rc, err := s.Open(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	data, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "abc" {
		t.Errorf("Open+ReadAll = %q, %v", data, err)
	}
	if l, err := s.Lookup(img.MD5, "sensor", "ESP32"); err != nil || l.ID != img.ID {
		t.Errorf("Lookup = %+v, %v", l, err)
	}
	if _, err := s.Lookup(img.MD5, "sensor", "ESP8266"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup other hardware: %v, want ErrNotFound", err)
	}
}

func TestIDStableAndTargetSpecific(t *testing.T) {
	a := openTest(t, nil)
	b := openTest(t, nil)
	img1, err := a.Add(context.Background(), strings.NewReader("firmware"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img2, err := b.Add(context.Background(), strings.NewReader("firmware"), Meta{Role: "sensor", Hardware: "ESP32", Version: "other"}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img1.ID != img2.ID {
		t.Errorf("same image and target got IDs %s and %s", img1.ID, img2.ID)
	}
	img3, err := a.Add(context.Background(), strings.NewReader("firmware"), Meta{Role: "gateway", Hardware: "ESP32", Version: "1.0.0"}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img3.ID == img1.ID || img3.MD5 != img1.MD5 {
		t.Errorf("other role: ID %s (first %s), md5 %s (first %s)", img3.ID, img1.ID, img3.MD5, img1.MD5)
	}
}

func TestAddDuplicate(t *testing.T) {
	s := openTest(t, nil)
	first, err := s.Add(context.Background(), strings.NewReader("image-1"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Add(context.Background(), strings.NewReader("image-1"), Meta{Role: "sensor", Hardware: "ESP32", Version: "1.0.1"}, AddOptions{})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate image: %v, want ErrExists", err)
	}
	if again.ID != first.ID || again.Version != "1.0.0" {
		t.Errorf("duplicate returned %+v, want the stored %+v", again, first)
	}
	want := fmt.Sprintf("firmware: image already stored: sensor/ESP32 md5 %s is image %s (version 1.0.0)", first.MD5, first.ID)
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}

	other, err := s.Add(context.Background(), strings.NewReader("image-2"), sensor, AddOptions{})
	if !errors.Is(err, ErrVersionExists) || errors.Is(err, ErrExists) || other.ID != first.ID {
		t.Fatalf("same version, other bytes: %+v, %v; want ErrVersionExists and the stored image", other, err)
	}
	if !strings.Contains(err.Error(), `version "1.0.0" is image `+first.ID) {
		t.Errorf("message: %s", err)
	}
	all, err := s.List()
	if err != nil || len(all) != 1 {
		t.Errorf("List = %d images, %v; want 1", len(all), err)
	}
	assertNoStaging(t, s)
}

func assertNoStaging(t *testing.T, s *Store) {
	t.Helper()
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in store", e.Name())
		}
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		k := min(r.n, len(p))
		r.n -= k
		return k, nil
	}
	return 0, errors.New("device unplugged")
}

func TestAddRejects(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, &Options{MaxSize: 10})
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		add  func() (Image, error)
		is   error
		msg  string
	}{
		{"empty", func() (Image, error) { return s.Add(ctx, strings.NewReader(""), sensor, AddOptions{}) },
			ErrEmpty, "firmware: image is empty: no bytes to store"},
		{"oversize", func() (Image, error) { return s.Add(ctx, strings.NewReader("12345678901"), sensor, AddOptions{}) },
			ErrTooLarge, "firmware: image too large: more than 10 bytes"},
		{"read error", func() (Image, error) { return s.Add(ctx, &failingReader{n: 4}, sensor, AddOptions{}) },
			nil, "firmware: read image: device unplugged"},
		{"canceled", func() (Image, error) { return s.Add(canceled, strings.NewReader("x"), sensor, AddOptions{}) },
			context.Canceled, "firmware: add: context canceled"},
		{"missing file", func() (Image, error) { return s.AddFile(ctx, filepath.Join(dir, "nope.bin"), sensor, AddOptions{}) },
			os.ErrNotExist, "firmware: open " + filepath.Join(dir, "nope.bin") + ": no such file or directory"},
		{"directory", func() (Image, error) { return s.AddFile(ctx, sub, sensor, AddOptions{}) },
			nil, "firmware: read " + sub + ": is a directory"},
		{"role with underscore", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "my_sensor", Hardware: "ESP32", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, `firmware: invalid image metadata: role "my_sensor" contains "_" (stock painlessMesh forbids '_' and '.' in roles)`},
		{"role with dot", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor.v2", Hardware: "ESP32", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, `firmware: invalid image metadata: role "sensor.v2" contains "." (stock painlessMesh forbids '_' and '.' in roles)`},
		{"role escapes", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "a/b", Hardware: "ESP32", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, `firmware: invalid image metadata: role "a/b" contains a path separator`},
		{"empty role", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Hardware: "ESP32", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, "firmware: invalid image metadata: role is empty"},
		{"empty hardware", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, "firmware: invalid image metadata: hardware is empty"},
		{"hardware with space", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor", Hardware: "ESP 32", Version: "1"}, AddOptions{})
		}, ErrInvalidMeta, `firmware: invalid image metadata: hardware "ESP 32" contains a space, control or non-ASCII character`},
		{"empty version", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor", Hardware: "ESP32"}, AddOptions{})
		}, ErrInvalidMeta, "firmware: invalid image metadata: version is empty"},
		{"version with newline", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), Meta{Role: "sensor", Hardware: "ESP32", Version: "1\n2"}, AddOptions{})
		}, ErrInvalidMeta, `firmware: invalid image metadata: version "1\n2" contains a control character`},
		{"short signing key", func() (Image, error) {
			return s.Add(ctx, strings.NewReader("x"), sensor, AddOptions{SigningKey: make([]byte, 5)})
		}, ErrInvalidKey, "firmware: invalid key: signing key is 5 bytes, want 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.add()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if err.Error() != tt.msg {
				t.Errorf("message:\n got %s\nwant %s", err, tt.msg)
			}
		})
	}
	all, err := s.List()
	if err != nil || len(all) != 0 {
		t.Errorf("after rejects: %d images, %v", len(all), err)
	}
	assertNoStaging(t, s)
}

func TestAddFileOversizeNamesPath(t *testing.T) {
	s := openTest(t, &Options{MaxSize: 4})
	path := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(path, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.AddFile(context.Background(), path, sensor, AddOptions{})
	want := "firmware: image too large: " + path + " is 5 bytes, limit 4"
	if !errors.Is(err, ErrTooLarge) || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddFile(context.Background(), path, sensor, AddOptions{})
	if !errors.Is(err, ErrEmpty) || err.Error() != "add "+path+": firmware: image is empty: no bytes to store" {
		t.Errorf("empty file: %v", err)
	}
}

func TestIDsThatEscape(t *testing.T) {
	s := openTest(t, nil)
	// A file next to the store that an escaping id could reach.
	if err := os.WriteFile(filepath.Join(filepath.Dir(s.Dir()), "meta.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "..", "../", "../etc", "/etc/passwd", "a/b", `a\b`, "0123456789ab/..", "0123456789AB", "0123456789a", "0123456789abc", ".tmp-123456"} {
		_, err := s.Get(id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := s.Remove(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Remove(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.AddVariant(id, "deflate", []byte("x")); !errors.Is(err, ErrInvalidID) {
			t.Errorf("AddVariant(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.ReadAll(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ReadAll(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	_, err := s.Get("../x")
	if want := `firmware: invalid image id: "../x" (want 12 lowercase hex digits)`; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if _, err := s.Get("0123456789ab"); !errors.Is(err, ErrNotFound) {
		t.Errorf("well-formed unknown id: %v, want ErrNotFound", err)
	}
}

func TestVariants(t *testing.T) {
	s := openTest(t, nil)
	img, err := s.Add(context.Background(), strings.NewReader("the image bytes"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.AddVariant(img.ID, "deflate", []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Method != "deflate" || v.Size != 3 || v.MD5 != "900150983cd24fb0d6963f7d28e17f72" {
		t.Errorf("variant = %+v", v)
	}
	got, err := s.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Variants["deflate"] != v || got.MD5 != img.MD5 {
		t.Errorf("record after AddVariant: %+v", got)
	}
	data, err := s.ReadTransfer(img.ID, "deflate")
	if err != nil || string(data) != "abc" {
		t.Errorf("ReadTransfer(deflate) = %q, %v", data, err)
	}
	data, err = s.ReadTransfer(img.ID, MethodNone)
	if err != nil || string(data) != "the image bytes" {
		t.Errorf("ReadTransfer(none) = %q, %v", data, err)
	}
	if _, err := s.ReadTransfer(img.ID, "heatshrink"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing variant: %v", err)
	}
	// Replacing a variant keeps one entry with the new bytes.
	if _, err := s.AddVariant(img.ID, "deflate", []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if data, err := s.ReadTransfer(img.ID, "deflate"); err != nil || string(data) != "abcd" {
		t.Errorf("after replace: %q, %v", data, err)
	}

	for _, tt := range []struct {
		method string
		data   []byte
		is     error
		msg    string
	}{
		{"none", []byte("x"), ErrInvalidMethod, `firmware: invalid variant method: "none" is the image itself, not a variant`},
		{"../x", []byte("x"), ErrInvalidMethod, `firmware: invalid variant method: "../x" (want 1-16 characters of a-z, 0-9, '-')`},
		{"", []byte("x"), ErrInvalidMethod, `firmware: invalid variant method: "" (want 1-16 characters of a-z, 0-9, '-')`},
		{"Deflate", []byte("x"), ErrInvalidMethod, `firmware: invalid variant method: "Deflate" (want 1-16 characters of a-z, 0-9, '-')`},
		{"gzip", nil, ErrEmpty, "firmware: image is empty: gzip variant of " + img.ID + " has no bytes"},
		{"gzip", make([]byte, DefaultMaxSize+1), ErrTooLarge, fmt.Sprintf("firmware: image too large: gzip variant is %d bytes, limit %d", DefaultMaxSize+1, DefaultMaxSize)},
	} {
		_, err := s.AddVariant(img.ID, tt.method, tt.data)
		if !errors.Is(err, tt.is) || err.Error() != tt.msg {
			t.Errorf("AddVariant(%q): %v, want %s", tt.method, err, tt.msg)
		}
	}
	if _, err := s.AddVariant("0123456789ab", "deflate", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("variant of unknown image: %v", err)
	}
}

func TestCorruptStore(t *testing.T) {
	s := openTest(t, nil)
	ctx := context.Background()
	good, err := s.Add(ctx, strings.NewReader("good image"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(content string, m Meta) Image {
		img, err := s.Add(ctx, strings.NewReader(content), m, AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	badMeta := mk("bad meta", Meta{Role: "a", Hardware: "ESP32", Version: "1"})
	badBytes := mk("bad bytes", Meta{Role: "b", Hardware: "ESP32", Version: "1"})
	short := mk("short image", Meta{Role: "c", Hardware: "ESP32", Version: "1"})
	if _, err := s.AddVariant(short.ID, "deflate", []byte("variant")); err != nil {
		t.Fatal(err)
	}
	write := func(id, name, content string) {
		if err := os.WriteFile(filepath.Join(s.Dir(), id, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(badMeta.ID, metaFile, `{"id": "`+badMeta.ID+`", "role": `)
	write(badBytes.ID, imageFile, "BAD bytes") // same length, other content
	write(short.ID, imageFile, "short")
	write(short.ID, "variant-deflate.bin", "VARIANT")

	if _, err := s.Get(badMeta.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "meta.json: unexpected end of JSON input") {
		t.Errorf("Get bad meta: %v", err)
	}
	_, err = s.ReadAll(badBytes.ID)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "image.bin has md5 ") || !strings.HasSuffix(err.Error(), ", recorded "+badBytes.MD5) {
		t.Errorf("ReadAll modified bytes: %v", err)
	}
	if _, err := s.ReadAll(short.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "image.bin is 5 bytes, recorded 11") {
		t.Errorf("ReadAll truncated: %v", err)
	}
	if _, err := s.ReadTransfer(short.ID, "deflate"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadTransfer modified variant: %v", err)
	}
	rc, err := s.Open(badBytes.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("streaming read of modified bytes: %v", err)
	}
	rc.Close()

	images, err := s.List()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), badMeta.ID) {
		t.Errorf("List error = %v, want ErrCorrupt naming %s", err, badMeta.ID)
	}
	if len(images) != 3 {
		t.Errorf("List returned %d readable images, want 3", len(images))
	}
	for _, img := range images {
		if img.ID == badMeta.ID {
			t.Errorf("List returned the corrupt record")
		}
	}
	// A record whose id does not match its directory, or whose fields are
	// invalid, is corrupt too.
	write(badMeta.ID, metaFile, string(mustJSON(good)))
	if _, err := s.Get(badMeta.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "records id "+good.ID) {
		t.Errorf("moved record: %v", err)
	}
	tampered := good
	tampered.Role = "evil_role"
	write(badMeta.ID, metaFile, string(mustJSON(tampered)))
	if _, err := s.Get(badMeta.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("invalid role in record: %v", err)
	}
	write(badMeta.ID, metaFile, strings.Repeat(" ", maxMetaSize+1))
	if _, err := s.Get(badMeta.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge record: %v", err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), badMeta.ID, metaFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(badMeta.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "meta.json is missing") {
		t.Errorf("missing record: %v", err)
	}
	// Unrelated files are not part of the store.
	if err := os.WriteFile(filepath.Join(s.Dir(), "README"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(s.Dir(), badMeta.ID)); err != nil {
		t.Fatal(err)
	}
	if images, err := s.List(); err != nil || len(images) != 3 {
		t.Errorf("List after cleanup: %d, %v", len(images), err)
	}
}

func TestRemove(t *testing.T) {
	s := openTest(t, nil)
	img, err := s.Add(context.Background(), strings.NewReader("x"), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(img.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if err := s.Remove(img.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	assertNoStaging(t, s)
	// The same image can be added again.
	if _, err := s.Add(context.Background(), strings.NewReader("x"), sensor, AddOptions{}); err != nil {
		t.Errorf("re-add: %v", err)
	}
}

func TestLatest(t *testing.T) {
	now := fixedNow
	s := openTest(t, &Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	v1, _ := s.Add(ctx, strings.NewReader("v1"), Meta{Role: "sensor", Hardware: "ESP32", Version: "1"}, AddOptions{})
	now = now.Add(time.Minute)
	v2, _ := s.Add(ctx, strings.NewReader("v2"), Meta{Role: "sensor", Hardware: "ESP32", Version: "2"}, AddOptions{})
	now = now.Add(time.Minute)
	if _, err := s.Add(ctx, strings.NewReader("other"), Meta{Role: "sensor", Hardware: "ESP8266", Version: "3"}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest("sensor", "ESP32")
	if err != nil || got.ID != v2.ID {
		t.Errorf("Latest = %+v, %v; want %s (v1 is %s)", got, err, v2.ID, v1.ID)
	}
	if _, err := s.Latest("gateway", "ESP32"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Latest of unknown role: %v", err)
	}
	all, _ := s.List()
	var order []string
	for _, img := range all {
		order = append(order, img.Hardware+"/"+img.Version)
	}
	if got := strings.Join(order, " "); got != "ESP32/1 ESP32/2 ESP8266/3" {
		t.Errorf("List order %s", got)
	}
}

func TestConcurrentAdds(t *testing.T) {
	s := openTest(t, nil)
	// A second Store on the same directory stands in for another process.
	s2, err := Open(s.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			_, errs[i] = st.Add(context.Background(), strings.NewReader("same image"), sensor, AddOptions{})
		}()
		go func() {
			defer wg.Done()
			_, errs[n+i] = s.Add(context.Background(), strings.NewReader(fmt.Sprintf("image %d", i)),
				Meta{Role: "sensor", Hardware: "ESP8266", Version: fmt.Sprint(i)}, AddOptions{})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs[:n] {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrExists):
			t.Errorf("concurrent duplicate add: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d adds of the same image succeeded, want 1", ok)
	}
	for i, err := range errs[n:] {
		if err != nil {
			t.Errorf("distinct add %d: %v", i, err)
		}
	}
	all, err := s.List()
	if err != nil || len(all) != n+1 {
		t.Errorf("List = %d images, %v; want %d", len(all), err, n+1)
	}
	assertNoStaging(t, s)
}

func TestOpenRemovesStaleStaging(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".tmp-stale")
	fresh := filepath.Join(dir, ".tmp-fresh")
	for _, d := range []string{stale, fresh} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := fixedNow.Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	recent := fixedNow.Add(-time.Minute)
	if err := os.Chtimes(fresh, recent, recent); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, &Options{Now: func() time.Time { return fixedNow }}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale staging dir still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh staging dir removed: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, nil); err == nil {
		t.Error("Open on a file succeeded")
	}
	if _, err := Open(t.TempDir(), &Options{MaxSize: -1}); err == nil {
		t.Error("negative MaxSize accepted")
	}
}

func TestSignedImages(t *testing.T) {
	keyDir := t.TempDir()
	pub, err := GenerateKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(filepath.Join(keyDir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s := openTest(t, nil)
	content := []byte("signed firmware image")
	img, err := s.Add(context.Background(), bytes.NewReader(content), sensor, AddOptions{SigningKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	if !img.Signed() || len(img.Signature) != ed25519.SignatureSize {
		t.Fatalf("signature %x", img.Signature)
	}
	// Checked with the standard library directly, independent of Verify.
	if !ed25519.Verify(pub, content, img.Signature) {
		t.Error("stored signature does not verify with crypto/ed25519")
	}
	if err := s.VerifySignature(img.ID, pub); err != nil {
		t.Errorf("VerifySignature: %v", err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if err := s.VerifySignature(img.ID, otherPub); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key: %v", err)
	} else if want := "image " + img.ID + ": firmware: signature does not match"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if err := Verify(append([]byte("X"), content[1:]...), img.Signature, pub); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered image: %v", err)
	}
	if err := Verify(content, img.Signature[:10], pub); !errors.Is(err, ErrSignature) || err.Error() != "firmware: signature does not match: signature is 10 bytes, want 64" {
		t.Errorf("short signature: %v", err)
	}
	if err := Verify(content, img.Signature, pub[:5]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short key: %v", err)
	}
	unsigned, err := s.Add(context.Background(), strings.NewReader("unsigned"), Meta{Role: "x", Hardware: "ESP32", Version: "1"}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.VerifySignature(unsigned.ID, pub); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	// The signature survives a reopen.
	s2, err := Open(s.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.VerifySignature(img.ID, pub); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}

func TestMetaValidation(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, tt := range []struct {
		m   Meta
		msg string
	}{
		{Meta{Role: long, Hardware: "ESP32", Version: "1"}, "firmware: invalid image metadata: role is 65 bytes, at most 64 allowed"},
		{Meta{Role: "sensör", Hardware: "ESP32", Version: "1"}, `firmware: invalid image metadata: role "sensör" contains a space, control or non-ASCII character`},
		{Meta{Role: "s", Hardware: `..\x`, Version: "1"}, `firmware: invalid image metadata: hardware "..\\x" contains a path separator`},
		{Meta{Role: "s", Hardware: "ESP32", Version: long}, "firmware: invalid image metadata: version is 65 bytes, at most 64 allowed"},
		{Meta{Role: "s", Hardware: "ESP32", Version: "\xff"}, `firmware: invalid image metadata: version "\xff" is not valid UTF-8`},
	} {
		err := ValidateMeta(tt.m)
		if !errors.Is(err, ErrInvalidMeta) || err.Error() != tt.msg {
			t.Errorf("%+v: %v, want %s", tt.m, err, tt.msg)
		}
	}
	for _, ok := range []Meta{
		{Role: "otareceiver", Hardware: "ESP8266", Version: "v2.1.3-rc1+build.5"},
		{Role: "gateway-2", Hardware: "linux_amd64", Version: "2026 November"},
	} {
		if err := ValidateMeta(ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestAddChecksWhatTheSenderSaid: a wrong md5 or length is refused after
// the bytes are read, and leaves nothing behind.
func TestAddChecksWhatTheSenderSaid(t *testing.T) {
	s := openTest(t, nil)
	ctx := context.Background()
	_, err := s.Add(ctx, strings.NewReader("abc"), sensor, AddOptions{MD5: "00000000000000000000000000000000"})
	if !errors.Is(err, ErrMD5Mismatch) || !strings.Contains(err.Error(), "900150983cd24fb0d6963f7d28e17f72") {
		t.Errorf("wrong md5: %v", err)
	}
	if _, err := s.Add(ctx, strings.NewReader("abc"), sensor, AddOptions{MD5: "xyz"}); !errors.Is(err, ErrInvalidMeta) {
		t.Errorf("md5 not hex: %v", err)
	}
	if _, err := s.Add(ctx, strings.NewReader("abc"), sensor, AddOptions{Size: 4}); err == nil || !strings.Contains(err.Error(), "got 3 bytes, the sender declared 4") {
		t.Errorf("short image: %v", err)
	}
	if imgs, _ := s.List(); len(imgs) != 0 {
		t.Errorf("refused images stored: %+v", imgs)
	}
	assertNoStaging(t, s)
	img, err := s.Add(ctx, strings.NewReader("abc"), sensor, AddOptions{MD5: "900150983CD24FB0D6963F7D28E17F72", Size: 3})
	if err != nil || img.Size != 3 {
		t.Fatalf("right md5 and size: %+v, %v", img, err)
	}
}

// TestStoreQuota: MaxStoreSize bounds all images and variants together; an
// image that does not fit is refused, before reading when its size is
// declared, and the error says how much is used. Removing frees the room.
func TestStoreQuota(t *testing.T) {
	s := openTest(t, &Options{MaxSize: 100, MaxStoreSize: 240})
	ctx := context.Background()
	a, err := s.Add(ctx, strings.NewReader(strings.Repeat("a", 100)), sensor, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddVariant(a.ID, "deflate", bytes.Repeat([]byte{1}, 50)); err != nil {
		t.Fatal(err)
	}
	if u, err := s.Usage(); err != nil || u != (Usage{Images: 1, Bytes: 150, Limit: 240}) {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
	v2 := Meta{Role: "sensor", Hardware: "ESP32", Version: "2"}
	_, err = s.Add(ctx, strings.NewReader(strings.Repeat("b", 101)), v2, AddOptions{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxSize: %v", err)
	}
	_, err = s.Add(ctx, strings.NewReader(strings.Repeat("b", 100)), v2, AddOptions{})
	want := "firmware: store full: the image needs 100 bytes; 1 image uses 150 bytes of the 240 bytes limit, 90 bytes free"
	if !errors.Is(err, ErrStoreFull) || err.Error() != want {
		t.Fatalf("over the quota:\n got %v\nwant %s", err, want)
	}
	// Declared, it is refused before a byte is read.
	_, err = s.Add(ctx, &failingReader{}, v2, AddOptions{Size: 101})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("declared over MaxSize: %v", err)
	}
	_, err = s.Add(ctx, &failingReader{}, v2, AddOptions{Size: 100})
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("declared over the quota: %v", err)
	}
	assertNoStaging(t, s)
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, strings.NewReader(strings.Repeat("b", 100)), v2, AddOptions{Size: 100}); err != nil {
		t.Fatalf("after removing an image: %v", err)
	}
}
