package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	imageFile     = "image.bin"
	metaFile      = "meta.json"
	variantPrefix = "variant-"
	stagingPrefix = ".tmp-"
	trashPrefix   = ".trash-"

	// maxMetaSize bounds how much of a meta.json is read: a real record is
	// well under 1 KiB, so anything larger is corrupt or hostile.
	maxMetaSize = 64 << 10

	// staleAfter is how old an abandoned staging directory (left by a crash
	// during Add) must be before Open removes it; younger ones may belong to
	// another process adding an image right now.
	staleAfter = time.Hour
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// MaxSize limits images and variants in bytes (default DefaultMaxSize).
	MaxSize int64
	// MaxStoreSize limits the bytes of all images and variants together;
	// Add refuses an image that would exceed it with ErrStoreFull. Zero
	// means no limit.
	MaxStoreSize int64
	// Now stamps Image.Added (default time.Now).
	Now func() time.Time
}

// AddOptions configures Add.
type AddOptions struct {
	// SigningKey, if set, signs the image's manifest (and, for receivers
	// that predate manifests, the image bytes) with ed25519.
	SigningKey ed25519.PrivateKey
	// Counter is the security counter of the manifest; 0 takes the next
	// one: the highest counter of the stored images of the same role and
	// hardware plus one (1 for the first).
	Counter uint64
	// Downgrade marks the manifest as a signed downgrade: receivers with a
	// higher counter install it too. Needs an explicit Counter.
	Downgrade bool
	// MD5, if set (hex), is what the sender says the image's MD5 is: an
	// image with another MD5 is refused with ErrMD5Mismatch.
	MD5 string
	// Size, if positive, is the length the sender declared: limits are
	// checked before anything is read, and an image of another length is
	// refused.
	Size int64
}

// Store is a firmware store directory. Its methods are safe for concurrent
// use; every call reads the directory afresh, so images added by another
// process (the CLI next to a running gateway) are seen at once.
type Store struct {
	dir          string
	maxSize      int64
	maxStoreSize int64
	now          func() time.Time
	mu           sync.RWMutex
}

// Open opens the store in dir, creating the directory if needed, and
// removes staging directories abandoned by a crash more than an hour ago.
func Open(dir string, opts *Options) (*Store, error) {
	s := &Store{dir: dir, maxSize: DefaultMaxSize, now: time.Now}
	if opts != nil {
		if opts.MaxSize < 0 {
			return nil, fmt.Errorf("firmware: open %s: negative MaxSize %d", dir, opts.MaxSize)
		}
		if opts.MaxSize > 0 {
			s.maxSize = opts.MaxSize
		}
		if opts.MaxStoreSize < 0 {
			return nil, fmt.Errorf("firmware: open %s: negative MaxStoreSize %d", dir, opts.MaxStoreSize)
		}
		s.maxStoreSize = opts.MaxStoreSize
		if opts.Now != nil {
			s.now = opts.Now
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("firmware: open store: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("firmware: open store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("firmware: open store: %s is not a directory", dir)
	}
	s.removeStale()
	return s, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// MaxSize returns the size limit for images and variants.
func (s *Store) MaxSize() int64 { return s.maxSize }

func (s *Store) removeStale() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	cutoff := s.now().Add(-staleAfter)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, stagingPrefix) && !strings.HasPrefix(name, trashPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || info.ModTime().After(cutoff) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(s.dir, name))
	}
}

// imageID derives the stable ID of an image for a target.
func imageID(role, hardware, md5hex string) string {
	sum := sha256.Sum256([]byte(role + "\x00" + hardware + "\x00" + md5hex))
	return hex.EncodeToString(sum[:6])
}

// AddFile adds the image in the file at path; see Add.
func (s *Store) AddFile(ctx context.Context, path string, meta Meta, opts AddOptions) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("firmware: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Image{}, fmt.Errorf("firmware: %w", err)
	}
	if st.IsDir() {
		return Image{}, fmt.Errorf("firmware: read %s: is a directory", path)
	}
	if st.Mode().IsRegular() && st.Size() > s.maxSize {
		return Image{}, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, path, st.Size(), s.maxSize)
	}
	img, err := s.Add(ctx, f, meta, opts)
	if err != nil {
		return img, fmt.Errorf("add %s: %w", path, err)
	}
	return img, nil
}

// Add streams an image from r into a staging file in the store, hashing it
// as it goes (the image is never held in memory, unless it is signed), and
// stores it with meta. Whatever fails, a partial image leaves nothing
// behind.
//
// If the same image (same MD5, role and hardware) is already stored, Add
// returns the stored Image together with an error wrapping ErrExists, so
// callers that only want the image to be present can ignore that error;
// the stored Image's version tells whether it is stored under meta.Version.
// A different image under an existing role/hardware/version is refused with
// ErrVersionExists and the stored Image: a version names exactly one image.
// With a MaxStoreSize, an image that does not fit is refused with
// ErrStoreFull.
func (s *Store) Add(ctx context.Context, r io.Reader, meta Meta, opts AddOptions) (Image, error) {
	if err := ValidateMeta(meta); err != nil {
		return Image{}, err
	}
	if opts.SigningKey != nil && len(opts.SigningKey) != ed25519.PrivateKeySize {
		return Image{}, fmt.Errorf("%w: signing key is %d bytes, want %d", ErrInvalidKey, len(opts.SigningKey), ed25519.PrivateKeySize)
	}
	if opts.SigningKey == nil && (opts.Counter != 0 || opts.Downgrade) {
		return Image{}, fmt.Errorf("%w: a security counter or downgrade needs a signing key", ErrManifest)
	}
	if opts.Downgrade && opts.Counter == 0 {
		return Image{}, fmt.Errorf("%w: a downgrade needs an explicit security counter", ErrManifest)
	}
	opts.MD5 = strings.ToLower(opts.MD5)
	if opts.MD5 != "" && !isMD5Hex(opts.MD5) {
		return Image{}, fmt.Errorf("%w: md5 %q is not 32 hex digits", ErrInvalidMeta, opts.MD5)
	}
	if opts.Size > s.maxSize {
		return Image{}, fmt.Errorf("%w: image is %d bytes, limit %d", ErrTooLarge, opts.Size, s.maxSize)
	}
	if opts.Size > 0 {
		s.mu.RLock()
		err := s.checkRoom(opts.Size)
		s.mu.RUnlock()
		if err != nil {
			return Image{}, err
		}
	}
	staging, err := os.MkdirTemp(s.dir, stagingPrefix)
	if err != nil {
		return Image{}, fmt.Errorf("firmware: add: %w", err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(staging)
		}
	}()

	sum, size, err := s.copyImage(ctx, filepath.Join(staging, imageFile), r)
	if err != nil {
		return Image{}, err
	}
	if opts.Size > 0 && size != opts.Size {
		return Image{}, fmt.Errorf("firmware: read image: got %d bytes, the sender declared %d", size, opts.Size)
	}
	if opts.MD5 != "" && sum != opts.MD5 {
		return Image{}, fmt.Errorf("%w: the image's md5 is %s, the sender said %s", ErrMD5Mismatch, sum, opts.MD5)
	}
	img := Image{
		ID:       imageID(meta.Role, meta.Hardware, sum),
		Role:     meta.Role,
		Hardware: meta.Hardware,
		Version:  meta.Version,
		MD5:      sum,
		Size:     size,
		Added:    s.now().UTC(),
	}
	if opts.SigningKey != nil {
		// ed25519 signs the message whole.
		data, err := readLimited(filepath.Join(staging, imageFile), size)
		if err != nil {
			return Image{}, fmt.Errorf("firmware: add: %w", err)
		}
		img.Signature = ed25519.Sign(opts.SigningKey, data)
		counter := opts.Counter
		if counter == 0 {
			s.mu.RLock()
			counter = s.nextCounter(meta.Role, meta.Hardware)
			s.mu.RUnlock()
		}
		if img.Manifest, img.ManifestSig, err = SignManifest(NewManifest(data, meta, counter, opts.Downgrade), opts.SigningKey); err != nil {
			return Image{}, err
		}
	}
	if err := writeFileSync(filepath.Join(staging, metaFile), mustJSON(img)); err != nil {
		return Image{}, fmt.Errorf("firmware: add: %w", err)
	}
	if err := syncDir(staging); err != nil {
		return Image{}, fmt.Errorf("firmware: add: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if existing, err := s.get(img.ID); err == nil {
		return existing, fmt.Errorf("%w: %s/%s md5 %s is image %s (version %s)", ErrExists, img.Role, img.Hardware, img.MD5, existing.ID, existing.Version)
	} else if !errors.Is(err, ErrNotFound) {
		return Image{}, err
	}
	all, _ := s.list()
	for _, other := range all {
		if other.ID == img.ID {
			// Another process published these very bytes after our get.
			return other, fmt.Errorf("%w: %s/%s md5 %s is image %s (version %s)", ErrExists, img.Role, img.Hardware, img.MD5, other.ID, other.Version)
		}
		if other.Role == img.Role && other.Hardware == img.Hardware && other.Version == img.Version {
			return other, fmt.Errorf("%w: %s/%s version %q is image %s with md5 %s, not %s", ErrVersionExists, img.Role, img.Hardware, img.Version, other.ID, other.MD5, img.MD5)
		}
	}
	if err := s.checkRoom(size); err != nil {
		return Image{}, err
	}
	final := filepath.Join(s.dir, img.ID)
	if err := os.Rename(staging, final); err != nil {
		// Another process published the same image between our check and
		// the rename: rename onto a non-empty directory fails.
		if existing, gerr := s.get(img.ID); gerr == nil {
			return existing, fmt.Errorf("%w: %s/%s md5 %s is image %s (version %s)", ErrExists, img.Role, img.Hardware, img.MD5, existing.ID, existing.Version)
		}
		return Image{}, fmt.Errorf("firmware: add: %w", err)
	}
	published = true
	if err := syncDir(s.dir); err != nil {
		return Image{}, fmt.Errorf("firmware: add: %w", err)
	}
	return img, nil
}

func isMD5Hex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s) == 2*md5.Size
}

// Usage is how much of the store is used.
type Usage struct {
	Images int   // images stored
	Bytes  int64 // their bytes, variants included
	Limit  int64 // MaxStoreSize; zero: no limit
}

// Usage returns what the stored images occupy. Corrupt entries are not
// counted.
func (s *Store) Usage() (Usage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.usage()
}

func (s *Store) usage() (Usage, error) {
	all, err := s.list()
	u := Usage{Images: len(all), Limit: s.maxStoreSize}
	for _, img := range all {
		u.Bytes += img.Size
		for _, v := range img.Variants {
			u.Bytes += v.Size
		}
	}
	return u, err
}

// CheckRoom refuses an image of size bytes with ErrStoreFull if it would
// not fit in MaxStoreSize now: for uploads that stage the image elsewhere
// first and want to refuse early.
func (s *Store) CheckRoom(size int64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkRoom(size)
}

// checkRoom refuses size more bytes if they would exceed MaxStoreSize;
// s.mu must be held.
func (s *Store) checkRoom(size int64) error {
	if s.maxStoreSize <= 0 {
		return nil
	}
	u, _ := s.usage()
	if u.Bytes+size <= s.maxStoreSize {
		return nil
	}
	images := "images use"
	if u.Images == 1 {
		images = "image uses"
	}
	return fmt.Errorf("%w: the image needs %s; %d %s %s of the %s limit, %s free",
		ErrStoreFull, formatBytes(size), u.Images, images, formatBytes(u.Bytes), formatBytes(s.maxStoreSize), formatBytes(max(0, s.maxStoreSize-u.Bytes)))
}

// formatBytes writes a size for people: "512 bytes", "1.5 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f, prefix := float64(n)/unit, "KMGTPE"
	i := 0
	for f >= unit && i < len(prefix)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, prefix[i])
}

// copyImage streams r into path, enforcing the size limit, and returns the
// MD5 and size.
func (s *Store) copyImage(ctx context.Context, path string, r io.Reader) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", 0, fmt.Errorf("firmware: add: %w", err)
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, s.maxSize+1))
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, fmt.Errorf("firmware: add: %w", ctx.Err())
		}
		return "", 0, fmt.Errorf("firmware: read image: %w", err)
	}
	if n == 0 {
		return "", 0, fmt.Errorf("%w: no bytes to store", ErrEmpty)
	}
	if n > s.maxSize {
		return "", 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.maxSize)
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("firmware: add: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("firmware: add: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get returns the record of image id.
func (s *Store) Get(id string) (Image, error) {
	if err := ValidateID(id); err != nil {
		return Image{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.get(id)
}

func (s *Store) get(id string) (Image, error) {
	dir := filepath.Join(s.dir, id)
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Image{}, fmt.Errorf("firmware: %w", err)
	}
	if !st.IsDir() {
		return Image{}, fmt.Errorf("%w: %s is not a directory", ErrCorrupt, dir)
	}
	path := filepath.Join(dir, metaFile)
	data, err := readLimited(path, maxMetaSize)
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("%w: %s is missing", ErrCorrupt, path)
	}
	if err != nil {
		return Image{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	img, err := decodeMeta(data)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	if img.ID != id {
		return Image{}, fmt.Errorf("%w: %s: records id %s", ErrCorrupt, path, img.ID)
	}
	return img, nil
}

// decodeMeta parses and validates a meta.json record.
func decodeMeta(data []byte) (Image, error) {
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return Image{}, err
	}
	if err := validateImage(img); err != nil {
		return Image{}, err
	}
	return img, nil
}

// Lookup finds the image a DataRequest asks for: the one with this MD5,
// role and hardware.
func (s *Store) Lookup(md5hex, role, hardware string) (Image, error) {
	img, err := s.Get(imageID(role, hardware, md5hex))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Image{}, fmt.Errorf("%w: %s/%s md5 %s", ErrNotFound, role, hardware, md5hex)
		}
		return Image{}, err
	}
	return img, nil
}

// Latest returns the most recently added image for role and hardware.
func (s *Store) Latest(role, hardware string) (Image, error) {
	all, err := s.List()
	var best Image
	found := false
	for _, img := range all {
		if img.Role != role || img.Hardware != hardware {
			continue
		}
		if !found || img.Added.After(best.Added) || (img.Added.Equal(best.Added) && img.ID > best.ID) {
			best, found = img, true
		}
	}
	if !found {
		if err != nil {
			return Image{}, err
		}
		return Image{}, fmt.Errorf("%w: no image for %s/%s", ErrNotFound, role, hardware)
	}
	return best, nil
}

// List returns all images sorted by role, hardware, time added and ID. If
// some entries are corrupt, List returns the readable ones together with an
// error wrapping ErrCorrupt that names the others.
func (s *Store) List() ([]Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.list()
}

func (s *Store) list() ([]Image, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("firmware: list: %w", err)
	}
	images := []Image{}
	var errs []error
	for _, e := range entries {
		// Other files in the directory (a README, an editor's backup) are
		// not part of the store.
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		img, err := s.get(e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		images = append(images, img)
	}
	sort.Slice(images, func(i, j int) bool {
		a, b := images[i], images[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		if a.Hardware != b.Hardware {
			return a.Hardware < b.Hardware
		}
		if !a.Added.Equal(b.Added) {
			return a.Added.Before(b.Added)
		}
		return a.ID < b.ID
	})
	return images, errors.Join(errs...)
}

// Open returns a reader of the image bytes. The reader checks size and MD5
// as it goes and returns an error wrapping ErrCorrupt instead of io.EOF if
// the stored bytes do not match the record.
func (s *Store) Open(id string) (io.ReadCloser, error) {
	img, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	return openChecked(filepath.Join(s.dir, id, imageFile), img.Size, img.MD5)
}

// ReadAll returns the image bytes, checked against the recorded size and MD5.
func (s *Store) ReadAll(id string) ([]byte, error) {
	img, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	return readChecked(filepath.Join(s.dir, id, imageFile), img.Size, img.MD5)
}

// ReadTransfer returns the bytes sent on the wire for method: the image
// itself for "none", otherwise the stored variant, checked against its
// recorded size and MD5.
func (s *Store) ReadTransfer(id, method string) ([]byte, error) {
	if method == MethodNone {
		return s.ReadAll(id)
	}
	if err := ValidateMethod(method); err != nil {
		return nil, err
	}
	img, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	v, ok := img.Variants[method]
	if !ok {
		return nil, fmt.Errorf("%w: image %s has no %s variant", ErrNotFound, id, method)
	}
	return readChecked(filepath.Join(s.dir, id, variantPrefix+method+".bin"), v.Size, v.MD5)
}

// AddVariant stores data as the transfer variant method of image id,
// replacing an earlier variant of the same method. The variant file is in
// place before the record names it, so a crash never leaves a record
// pointing at missing bytes.
func (s *Store) AddVariant(id, method string, data []byte) (Variant, error) {
	if err := ValidateID(id); err != nil {
		return Variant{}, err
	}
	if err := ValidateMethod(method); err != nil {
		return Variant{}, err
	}
	if len(data) == 0 {
		return Variant{}, fmt.Errorf("%w: %s variant of %s has no bytes", ErrEmpty, method, id)
	}
	if int64(len(data)) > s.maxSize {
		return Variant{}, fmt.Errorf("%w: %s variant is %d bytes, limit %d", ErrTooLarge, method, len(data), s.maxSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.get(id)
	if err != nil {
		return Variant{}, err
	}
	sum := md5.Sum(data)
	v := Variant{Method: method, Size: int64(len(data)), MD5: hex.EncodeToString(sum[:])}
	dir := filepath.Join(s.dir, id)
	if err := writeAtomic(dir, variantPrefix+method+".bin", data); err != nil {
		return Variant{}, fmt.Errorf("firmware: add variant: %w", err)
	}
	if img.Variants == nil {
		img.Variants = map[string]Variant{}
	}
	img.Variants[method] = v
	if err := writeAtomic(dir, metaFile, mustJSON(img)); err != nil {
		return Variant{}, fmt.Errorf("firmware: add variant: %w", err)
	}
	return v, nil
}

// Remove deletes image id. The image directory is first renamed out of the
// store in one step, so readers see the image either whole or gone.
func (s *Store) Remove(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src := filepath.Join(s.dir, id)
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	trash := filepath.Join(s.dir, trashPrefix+id+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(src, trash); err != nil {
		return fmt.Errorf("firmware: remove %s: %w", id, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("firmware: remove %s: %w", id, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("firmware: remove %s: %w", id, err)
	}
	return nil
}

// VerifySignature checks the stored signed manifest of image id against
// pub and the image bytes, and the older signature over the bytes if the
// image has one. An image without a manifest fails (wrapping ErrManifest):
// receivers with a key refuse it.
func (s *Store) VerifySignature(id string, pub ed25519.PublicKey) error {
	img, err := s.Get(id)
	if err != nil {
		return err
	}
	if !img.Signed() {
		return fmt.Errorf("%w: %s", ErrUnsigned, id)
	}
	data, err := s.ReadAll(id)
	if err != nil {
		return err
	}
	if len(img.Signature) > 0 {
		if err := Verify(data, img.Signature, pub); err != nil {
			return fmt.Errorf("image %s: %w", id, err)
		}
	}
	if len(img.Manifest) == 0 {
		return fmt.Errorf("image %s: %w: none; receivers with a public key refuse it (sign it again: meshfleet firmware sign %s)", id, ErrManifest, id)
	}
	m, err := OpenManifest(img.Manifest, img.ManifestSig, pub)
	if err == nil {
		err = m.Matches(data)
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", id, err)
	}
	return nil
}

// SignOptions configures Sign.
type SignOptions struct {
	// Counter is the manifest's security counter. 0 takes the next one
	// (the highest of the stored images of the same role and hardware
	// plus one), or for a downgrade the image's current counter.
	Counter   uint64
	Downgrade bool
}

// Sign signs image id again with key: a new manifest (and signature over
// the bytes) replaces the stored ones. Signing an older image again
// without Downgrade gives it the next counter, which makes it an ordinary
// update for every receiver; with Downgrade it keeps its counter (or
// takes opts.Counter) and installs over higher ones.
func (s *Store) Sign(id string, key ed25519.PrivateKey, opts SignOptions) (Image, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Image{}, fmt.Errorf("%w: signing key is %d bytes, want %d", ErrInvalidKey, len(key), ed25519.PrivateKeySize)
	}
	if err := ValidateID(id); err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.get(id)
	if err != nil {
		return Image{}, err
	}
	data, err := readChecked(filepath.Join(s.dir, id, imageFile), img.Size, img.MD5)
	if err != nil {
		return Image{}, err
	}
	counter := opts.Counter
	if counter == 0 {
		old, ok := img.SignedManifest()
		switch {
		case !opts.Downgrade:
			counter = s.nextCounter(img.Role, img.Hardware)
		case ok:
			counter = old.Counter
		default:
			return Image{}, fmt.Errorf("%w: image %s has no counter yet; a downgrade needs an explicit one", ErrManifest, id)
		}
	}
	img.Signature = ed25519.Sign(key, data)
	if img.Manifest, img.ManifestSig, err = SignManifest(NewManifest(data, img.Meta(), counter, opts.Downgrade), key); err != nil {
		return Image{}, err
	}
	if err := writeAtomic(filepath.Join(s.dir, id), metaFile, mustJSON(img)); err != nil {
		return Image{}, fmt.Errorf("firmware: sign %s: %w", id, err)
	}
	return img, nil
}

// nextCounter is one more than the highest security counter of the stored
// images for role and hardware (1 for the first). The caller holds s.mu.
func (s *Store) nextCounter(role, hardware string) uint64 {
	all, _ := s.list()
	var top uint64
	for _, img := range all {
		if m, ok := img.SignedManifest(); ok && img.Role == role && img.Hardware == hardware {
			top = max(top, m.Counter)
		}
	}
	return top + 1
}

// Verify checks an ed25519 signature over image bytes.
func Verify(image, sig []byte, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	if len(sig) == 0 {
		return ErrUnsigned
	}
	if len(sig) != signatureSize {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrSignature, len(sig), signatureSize)
	}
	if !ed25519.Verify(pub, image, sig) {
		return ErrSignature
	}
	return nil
}

const signatureSize = ed25519.SignatureSize

func mustJSON(v any) []byte {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only plain structs are marshalled here; failure is a programming error.
		panic(err)
	}
	return append(data, '\n')
}

// readLimited reads a file that must not exceed limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

func readChecked(path string, size int64, md5hex string) ([]byte, error) {
	rc, err := openChecked(path, size, md5hex)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := io.Copy(buf, rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func openChecked(path string, size int64, md5hex string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrCorrupt, path)
	}
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return &checkedReader{f: f, r: io.LimitReader(f, size+1), path: path, size: size, want: md5hex, h: md5.New()}, nil
}

// checkedReader verifies size and MD5 when the underlying file ends.
type checkedReader struct {
	f    *os.File
	r    io.Reader
	path string
	size int64
	n    int64
	want string
	h    hash.Hash
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.size {
		return n, fmt.Errorf("%w: %s is longer than the recorded %d bytes", ErrCorrupt, c.path, c.size)
	}
	if err == io.EOF {
		if c.n != c.size {
			return n, fmt.Errorf("%w: %s is %d bytes, recorded %d", ErrCorrupt, c.path, c.n, c.size)
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("%w: %s has md5 %s, recorded %s", ErrCorrupt, c.path, got, c.want)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.f.Close() }

// writeFileSync creates path with data and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAtomic replaces dir/name with data: temp file, sync, rename, sync dir.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, stagingPrefix+name+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
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
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
