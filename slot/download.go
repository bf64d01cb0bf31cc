package slot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/bits"
	"slices"
)

// MethodNone is the uncompressed transfer: the transfer bytes are the image.
const MethodNone = "none"

// Transfer describes a download: the image it installs and the bytes that
// travel, cut into chunks.
type Transfer struct {
	Image     string // md5 of the uncompressed image, 32 lowercase hex digits
	ImageSize int64  // 0 when unknown (a stock announce does not say)
	// Method is how the transfer bytes encode the image: "none",
	// "deflate", "heatshrink" (decoded by the function given to Finish).
	Method string
	// TransferSize is the number of transfer bytes; 0 when unknown (stock:
	// learned from the length of the last chunk).
	TransferSize int64
	TransferMD5  string // md5 of the transfer bytes; "" when not announced
	// ChunkSize is the length of every chunk but the last, which may be
	// shorter. A stock distributor does not announce it; a receiver takes
	// the length of chunk 0.
	ChunkSize int
	Chunks    int
	Signature []byte // ed25519 over the uncompressed image, or nil
	Version   string
	Role      string
	Hardware  string
	// SHA256 of the uncompressed image, from a verified manifest; Finish
	// checks it when set.
	SHA256 string `json:",omitempty"`
	// Counter is the image's security counter (from its manifest);
	// Confirm raises the store's counter to it.
	Counter uint64 `json:",omitempty"`
}

// identity is what makes two transfers the same bytes in the same layout;
// resuming is allowed only for an equal identity. Labels (version, role,
// hardware) and the signature may change without discarding chunks.
func (t Transfer) identity() [16]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n%s\n%d\n%s\n%d\n%d", t.Image, t.ImageSize, t.Method, t.TransferSize, t.TransferMD5, t.ChunkSize, t.Chunks)
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

func (t Transfer) info() Info {
	return Info{MD5: t.Image, Version: t.Version, Role: t.Role, Hardware: t.Hardware, Size: t.ImageSize, Counter: t.Counter}
}

// validate checks a transfer against the limits before anything is
// allocated for it: claimed sizes are never trusted.
func (t Transfer) validate(o Options) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrTransfer, fmt.Sprintf(format, args...))
	}
	if !isMD5(t.Image) {
		return bad("image md5 %q is not 32 lowercase hex digits", t.Image)
	}
	if t.ImageSize < 0 || t.ImageSize > o.MaxImageSize {
		return bad("image size %d outside [0, %d]", t.ImageSize, o.MaxImageSize)
	}
	if t.Method == "" || len(t.Method) > 16 {
		return bad("method %q must be 1 to 16 characters", t.Method)
	}
	for i := 0; i < len(t.Method); i++ {
		if c := t.Method[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return bad("method %q may only contain a-z, 0-9 and '-'", t.Method)
		}
	}
	if t.TransferSize < 0 || t.TransferSize > o.MaxTransferSize {
		return bad("transfer size %d outside [0, %d]", t.TransferSize, o.MaxTransferSize)
	}
	if t.Method == MethodNone && t.ImageSize != 0 && t.TransferSize != 0 && t.ImageSize != t.TransferSize {
		return bad("method none but image size %d != transfer size %d", t.ImageSize, t.TransferSize)
	}
	if t.TransferMD5 != "" && !isMD5(t.TransferMD5) {
		return bad("transfer md5 %q is not 32 lowercase hex digits", t.TransferMD5)
	}
	if t.ChunkSize <= 0 || t.ChunkSize > o.MaxChunkSize {
		return bad("chunk size %d outside [1, %d]", t.ChunkSize, o.MaxChunkSize)
	}
	if t.Chunks <= 0 {
		return bad("chunk count %d is not positive", t.Chunks)
	}
	// Chunks-1 full chunks plus at least one byte must fit the limit.
	if maxChunks := (o.MaxTransferSize-1)/int64(t.ChunkSize) + 1; int64(t.Chunks) > maxChunks {
		return bad("%d chunks of %d bytes exceed the %d-byte transfer limit", t.Chunks, t.ChunkSize, o.MaxTransferSize)
	}
	if t.TransferSize != 0 {
		if want := (t.TransferSize + int64(t.ChunkSize) - 1) / int64(t.ChunkSize); int64(t.Chunks) != want {
			return bad("%d bytes in chunks of %d make %d chunks, not %d", t.TransferSize, t.ChunkSize, want, t.Chunks)
		}
	}
	if n := len(t.Signature); n != 0 && n != 64 {
		return bad("signature is %d bytes, want 64", n)
	}
	if t.SHA256 != "" && !isHex(t.SHA256, 64) {
		return bad("sha256 %q is not 64 lowercase hex digits", t.SHA256)
	}
	if err := validInfo(t.info(), false); err != nil {
		return bad("%v", err)
	}
	return nil
}

// Download is a staged transfer. Its methods are safe for concurrent use
// (they take the store's lock). A Download stays usable until Finish, or
// until Begin starts a different transfer; after that its methods return
// ErrClosed.
type Download struct {
	s         *Store
	gen       int
	t         Transfer
	have      []uint64
	count     int
	lastLen   int   // length of the last chunk, once held
	unflushed []int // held chunks not yet in the log
	data      File
	log       File
	logSize   int64
}

// Begin starts downloading t into the staging area, or resumes: if the
// staged download has the same identity (image md5, sizes, method,
// transfer md5, chunk layout), the chunks already held stay held and only
// the labels and signature are updated. Anything else discards the staged
// chunks.
//
// Begin fails with ErrPending while an update awaits confirmation (the
// inactive slot is the fallback then), and with ErrReady if the inactive
// slot already holds this image verified (call Switch).
func (s *Store) Begin(t Transfer) (*Download, error) {
	if err := t.validate(s.opts); err != nil {
		return nil, err
	}
	t.Signature = slices.Clone(t.Signature)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Pending != "" {
		return nil, fmt.Errorf("%w: slot %s", ErrPending, s.st.Pending)
	}
	if ss := s.st.Slot(s.st.Active.Other()); ss.Status == Ready && ss.Image.MD5 == t.Image {
		return nil, fmt.Errorf("%w: slot %s holds %s", ErrReady, s.st.Active.Other(), t.Image)
	}
	if d := s.dl; d != nil && d.t.identity() == t.identity() {
		if !sameLabels(d.t, t) {
			if err := writeAtomic(s.fs, stagingMeta, encodeTransfer(t)); err != nil {
				return nil, fmt.Errorf("slot: update staged transfer: %w", err)
			}
			d.t = t
		}
		return d, nil
	}
	if err := s.discardStaging(); err != nil {
		return nil, err
	}
	d, err := s.newStaging(t)
	if err != nil {
		return nil, err
	}
	s.dl = d
	return d, nil
}

func sameLabels(a, b Transfer) bool {
	return a.Version == b.Version && a.Role == b.Role && a.Hardware == b.Hardware && bytes.Equal(a.Signature, b.Signature) &&
		a.SHA256 == b.SHA256 && a.Counter == b.Counter
}

// newStaging creates the staging files for t. Order: the transfer record
// first, then the log with t's identity, then the data file; a crash in
// between leaves a log whose identity does not match (ignored) or an empty
// one, never chunks credited to the wrong transfer.
func (s *Store) newStaging(t Transfer) (*Download, error) {
	if err := writeAtomic(s.fs, stagingMeta, encodeTransfer(t)); err != nil {
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	log, err := s.fs.Create(stagingLog)
	if err != nil {
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	hdr := logHeader(t)
	if _, err := log.WriteAt(hdr, 0); err != nil {
		log.Close()
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	if err := log.Sync(); err != nil {
		log.Close()
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	data, err := s.fs.Create(stagingData)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	if err := s.fs.Sync(); err != nil {
		log.Close()
		data.Close()
		return nil, fmt.Errorf("slot: begin: %w", err)
	}
	s.gen++
	return &Download{
		s: s, gen: s.gen, t: t,
		have: make([]uint64, (t.Chunks+63)/64),
		data: data, log: log, logSize: int64(len(hdr)),
	}, nil
}

// discardStaging drops the staged download (files and memory).
func (s *Store) discardStaging() error {
	if s.dl != nil {
		_ = s.dl.closeFiles()
		s.dl = nil
	}
	s.gen++
	// The log goes first: without it no chunk counts as held.
	removed := false
	for _, name := range []string{stagingLog, stagingMeta, stagingData} {
		ok, err := removeIfExists(s.fs, name)
		if err != nil {
			return fmt.Errorf("slot: discard staging: %w", err)
		}
		removed = removed || ok
	}
	if !removed {
		return nil
	}
	if err := s.fs.Sync(); err != nil {
		return fmt.Errorf("slot: discard staging: %w", err)
	}
	return nil
}

func (d *Download) closeFiles() error {
	var errs []error
	if d.data != nil {
		errs = append(errs, d.data.Close())
	}
	if d.log != nil {
		errs = append(errs, d.log.Close())
	}
	d.data, d.log = nil, nil
	return errors.Join(errs...)
}

func (d *Download) lock() error {
	d.s.mu.Lock()
	if d.gen != d.s.gen || d.s.dl != d {
		d.s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Transfer returns the transfer being downloaded.
func (d *Download) Transfer() Transfer {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.t
}

// Has reports whether chunk i is held.
func (d *Download) Has(i int) bool {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.has(i)
}

func (d *Download) has(i int) bool {
	return i >= 0 && i < d.t.Chunks && d.have[i/64]&(1<<(i%64)) != 0
}

// Count returns the number of chunks held.
func (d *Download) Count() int {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.count
}

// Done reports whether every chunk is held.
func (d *Download) Done() bool {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.count == d.t.Chunks
}

// Missing returns the indices of the chunks not held, ascending. It
// allocates one int per missing chunk; NextMissing walks the bitmap
// without allocating.
func (d *Download) Missing() []int {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	out := make([]int, 0, d.t.Chunks-d.count)
	for i := 0; i < d.t.Chunks; i++ {
		if !d.has(i) {
			out = append(out, i)
		}
	}
	return out
}

// NextMissing returns the first chunk at or after from that is not held,
// or -1 if there is none.
func (d *Download) NextMissing(from int) int {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if from < 0 {
		from = 0
	}
	for i := from; i < d.t.Chunks; {
		w := ^d.have[i/64] >> (i % 64)
		if w == 0 {
			i = (i/64 + 1) * 64
			continue
		}
		if j := i + bits.TrailingZeros64(w); j < d.t.Chunks {
			return j
		}
		break
	}
	return -1
}

// chunkLen returns the valid length for chunk i: ChunkSize for all but
// the last; for the last, exactly the remainder when TransferSize is known,
// otherwise anything from 1 to ChunkSize (0 is returned for "any").
func (d *Download) chunkLen(i int) int {
	if i < d.t.Chunks-1 {
		return d.t.ChunkSize
	}
	if d.t.TransferSize == 0 {
		return 0
	}
	return int(d.t.TransferSize - int64(i)*int64(d.t.ChunkSize))
}

func (d *Download) checkChunk(i, n int) error {
	if i < 0 || i >= d.t.Chunks {
		return fmt.Errorf("%w: index %d outside [0, %d)", ErrChunk, i, d.t.Chunks)
	}
	switch want := d.chunkLen(i); {
	case want != 0 && n != want:
		return fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrChunk, i, n, want)
	case want == 0 && (n < 1 || n > d.t.ChunkSize):
		return fmt.Errorf("%w: last chunk %d is %d bytes, want 1 to %d", ErrChunk, i, n, d.t.ChunkSize)
	}
	return nil
}

// WriteChunk stores chunk i of the transfer bytes. The index and length
// are checked (every chunk but the last is exactly ChunkSize). A chunk
// already held is left alone and ErrDuplicate returned, which callers
// receiving broadcasts may ignore. Every FlushEvery new chunks WriteChunk
// flushes.
func (d *Download) WriteChunk(i int, data []byte) error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.s.mu.Unlock()
	if err := d.checkChunk(i, len(data)); err != nil {
		return err
	}
	if d.has(i) {
		return fmt.Errorf("%w: chunk %d", ErrDuplicate, i)
	}
	if _, err := d.data.WriteAt(data, int64(i)*int64(d.t.ChunkSize)); err != nil {
		return fmt.Errorf("slot: write chunk %d: %w", i, err)
	}
	d.have[i/64] |= 1 << (i % 64)
	d.count++
	if i == d.t.Chunks-1 {
		d.lastLen = len(data)
	}
	d.unflushed = append(d.unflushed, i)
	if len(d.unflushed) >= d.s.opts.FlushEvery {
		return d.flush()
	}
	return nil
}

// ReadChunk returns chunk i if it is held (for serving it to a peer).
func (d *Download) ReadChunk(i int) ([]byte, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.s.mu.Unlock()
	if !d.has(i) {
		return nil, fmt.Errorf("%w: chunk %d is not held", ErrChunk, i)
	}
	n := d.t.ChunkSize
	if i == d.t.Chunks-1 {
		n = d.lastLen
	}
	buf := make([]byte, n)
	if _, err := d.data.ReadAt(buf, int64(i)*int64(d.t.ChunkSize)); err != nil {
		return nil, fmt.Errorf("slot: read chunk %d: %w", i, err)
	}
	return buf, nil
}

// Flush makes the chunks written so far durable: staging data first, then
// the log records naming them.
func (d *Download) Flush() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.s.mu.Unlock()
	return d.flush()
}

func (d *Download) flush() error {
	if len(d.unflushed) == 0 {
		return nil
	}
	if err := d.data.Sync(); err != nil {
		return fmt.Errorf("slot: flush: %w", err)
	}
	recs := make([]byte, 0, len(d.unflushed)*logRecordSize)
	for _, i := range d.unflushed {
		n := d.t.ChunkSize
		if i == d.t.Chunks-1 {
			n = d.lastLen
		}
		recs = appendLogRecord(recs, i, n)
	}
	if _, err := d.log.WriteAt(recs, d.logSize); err != nil {
		return fmt.Errorf("slot: flush: %w", err)
	}
	if err := d.log.Sync(); err != nil {
		return fmt.Errorf("slot: flush: %w", err)
	}
	d.logSize += int64(len(recs))
	d.unflushed = d.unflushed[:0]
	return nil
}

// transferSize is the staged byte count (known once the last chunk is held).
func (d *Download) transferSize() int64 {
	return int64(d.t.Chunks-1)*int64(d.t.ChunkSize) + int64(d.lastLen)
}

// Abort discards the staged download.
func (d *Download) Abort() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.s.mu.Unlock()
	return d.s.discardStaging()
}

// The chunk log: a header binding it to one transfer, then one record per
// durable chunk. A record is index and length (uint32 little endian) and a
// CRC-32C of those 8 bytes, so zeros or a torn tail never parse as a chunk.
const (
	logMagic      = "MFSL"
	logVersion    = 1
	logHeaderSize = 4 + 4 + 16
	logRecordSize = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func logHeader(t Transfer) []byte {
	b := make([]byte, 0, logHeaderSize)
	b = append(b, logMagic...)
	b = binary.LittleEndian.AppendUint32(b, logVersion)
	id := t.identity()
	return append(b, id[:]...)
}

func appendLogRecord(b []byte, i, n int) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(i))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseLog returns the chunks a log credits to t and how many bytes of it
// are valid. It stops at the first record that is torn, fails its
// checksum, or is invalid for t; everything after such a record is
// untrusted.
func parseLog(data []byte, t Transfer) (chunks map[int]int, valid int) {
	chunks = map[int]int{}
	if len(data) < logHeaderSize || !bytes.Equal(data[:logHeaderSize], logHeader(t)) {
		return chunks, 0
	}
	d := Download{t: t}
	off := logHeaderSize
	for ; off+logRecordSize <= len(data); off += logRecordSize {
		rec := data[off : off+logRecordSize]
		if crc32.Checksum(rec[:8], castagnoli) != binary.LittleEndian.Uint32(rec[8:]) {
			break
		}
		i64 := binary.LittleEndian.Uint32(rec[0:])
		n64 := binary.LittleEndian.Uint32(rec[4:])
		if int64(i64) >= int64(t.Chunks) || int64(n64) > int64(t.ChunkSize) {
			break
		}
		i, n := int(i64), int(n64)
		if d.checkChunk(i, n) != nil {
			break
		}
		chunks[i] = n
	}
	return chunks, off
}

func encodeTransfer(t Transfer) []byte {
	data, err := json.Marshal(t)
	if err != nil {
		panic(err) // plain values only
	}
	return data
}

// loadStaging picks up a staged download left by an earlier run. Damaged
// staging files are not an error: the download is discarded and fetched
// again.
func (s *Store) loadStaging() error {
	raw, err := readFile(s.fs, stagingMeta, maxStagingMeta)
	if errors.Is(err, fs.ErrNotExist) {
		// A crash during Begin or discard may leave stray files.
		return s.discardStaging()
	}
	var t Transfer
	if err == nil {
		err = json.Unmarshal(raw, &t)
	}
	if err == nil {
		err = t.validate(s.opts)
	}
	if err != nil {
		return s.discardStaging()
	}
	if ss := s.st.Slot(s.st.Active.Other()); ss.Status == Ready && ss.Image.MD5 == t.Image {
		// Finish completed and crashed before dropping the staging files.
		return s.discardStaging()
	}
	logData, err := readFile(s.fs, stagingLog, logHeaderSize+int64(logRecordSize)*(2*int64(t.Chunks)+1))
	if err != nil {
		logData = nil
	}
	data, err := s.fs.Open(stagingData)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = s.fs.Create(stagingData)
	}
	if err != nil {
		return fmt.Errorf("slot: open staging: %w", err)
	}
	dataSize, err := data.Size()
	if err != nil {
		data.Close()
		return fmt.Errorf("slot: open staging: %w", err)
	}
	chunks, valid := parseLog(logData, t)
	s.gen++
	d := &Download{s: s, gen: s.gen, t: t, have: make([]uint64, (t.Chunks+63)/64), data: data}
	held := make([]int, 0, len(chunks))
	for i, n := range chunks {
		// The log is written only after the data is synced, so this only
		// trips on a damaged file system; trust the data file's size.
		if int64(i)*int64(t.ChunkSize)+int64(n) > dataSize {
			continue
		}
		held = append(held, i)
	}
	slices.Sort(held) // map order must not leak into the log
	for _, i := range held {
		d.have[i/64] |= 1 << (i % 64)
		d.count++
		if i == t.Chunks-1 {
			d.lastLen = chunks[i]
		}
	}
	// Rewrite the log when it has a bad tail, duplicates or dropped
	// records, so later appends follow valid records only.
	if valid != len(logData) || valid != logHeaderSize+logRecordSize*len(held) {
		buf := logHeader(t)
		for _, i := range held {
			buf = appendLogRecord(buf, i, chunks[i])
		}
		if err := writeAtomic(s.fs, stagingLog, buf); err != nil {
			data.Close()
			return fmt.Errorf("slot: rewrite chunk log: %w", err)
		}
	}
	d.log, err = s.fs.Open(stagingLog)
	if err != nil {
		data.Close()
		return fmt.Errorf("slot: open chunk log: %w", err)
	}
	if d.logSize, err = d.log.Size(); err != nil {
		d.closeFiles()
		return fmt.Errorf("slot: open chunk log: %w", err)
	}
	s.dl = d
	return nil
}
