package mqttbridge

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// ControlRequest is a message on <prefix>/ota/control. Every request may
// carry a correlation_id, echoed in its response (MQTT v5 correlation
// data and response topic are honoured too).
type ControlRequest struct {
	CorrelationID string   `json:"correlation_id,omitempty"`
	Action        string   `json:"action"` // start, pause, resume, abort, list, status, upload_begin, upload_chunk, upload_end, upload_abort
	Campaign      string   `json:"campaign,omitempty"`
	Image         string   `json:"image,omitempty"`
	Mode          string   `json:"mode,omitempty"`
	Compress      string   `json:"compress,omitempty"`
	Role          string   `json:"role,omitempty"`
	Hardware      string   `json:"hardware,omitempty"`
	Nodes         []uint32 `json:"nodes,omitempty"`
	Forced        bool     `json:"forced,omitempty"`
	// Targets from the device registry and the queue (fleet.CampaignRequest).
	Tags          []string `json:"tags,omitempty"`
	Names         []string `json:"names,omitempty"`
	Outdated      bool     `json:"outdated,omitempty"`
	MaxConcurrent int      `json:"max_concurrent,omitempty"`
	// Upload fields.
	UploadID  string  `json:"upload_id,omitempty"`
	Version   string  `json:"version,omitempty"`
	Size      int64   `json:"size,omitempty"`
	ChunkSize int     `json:"chunk_size,omitempty"`
	MD5       string  `json:"md5,omitempty"`
	Index     int     `json:"index,omitempty"`
	Data      string  `json:"data,omitempty"`  // base64 (standard) chunk bytes
	CRC32     *uint32 `json:"crc32,omitempty"` // IEEE CRC of the chunk bytes
	// Rollout fields (rollout.go).
	Rollout  string                `json:"rollout,omitempty"`
	Spec     *fleet.RolloutRequest `json:"spec,omitempty"`
	Reason   string                `json:"reason,omitempty"`
	Rollback bool                  `json:"rollback,omitempty"`
	// Meshes names the meshes a request is for: required on the shared
	// control topic (mesh ids, or "*" for every mesh), where each gateway
	// runs only what names its own mesh; optional on a mesh's own topic,
	// where it must name that mesh.
	Meshes []string `json:"meshes,omitempty"`
}

// ControlResponse answers one request on <prefix>/ota/control/response.
type ControlResponse struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	Action        string `json:"action"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
	Data          any    `json:"data,omitempty"`
	// Mesh is the id of the mesh whose gateway answers: on the shared
	// control topic one request gets an answer from each mesh it names.
	Mesh string `json:"mesh,omitempty"`
}

func (b *Bridge) handleControl(ctx context.Context, m Message) { b.handleControlOn(ctx, m, false) }

func (b *Bridge) handleControlOn(ctx context.Context, m Message, shared bool) {
	var req ControlRequest
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.DisallowUnknownFields()
	resp := ControlResponse{Mesh: b.meshID()}
	from := b.sender(m)
	replyTo := b.topic(TopicOTAResponse)
	if shared {
		replyTo = SharedResponseTopic(b.cfg.SharedPrefix)
	}
	if err := dec.Decode(&req); err != nil {
		// Still echo what can be read, so the sender can match the error.
		var id struct {
			CorrelationID string `json:"correlation_id"`
			Action        string `json:"action"`
		}
		json.Unmarshal(m.Payload, &id)
		resp.CorrelationID, resp.Action = id.CorrelationID, id.Action
		if resp.Action == "" {
			resp.Action = "unknown"
		}
		resp.Error = fmt.Sprintf("request is not a valid control document: %v", err)
		if b.checkReplyTopic(m, from, replyTo) != nil {
			m.ResponseTopic = "" // as for a valid request: only to a reply topic
		}
	} else {
		resp.CorrelationID, resp.Action = req.CorrelationID, req.Action
		var data any
		run, err := b.addressed(req, shared)
		if !run {
			return
		}
		if rerr := b.checkReplyTopic(m, from, replyTo); rerr != nil {
			// Never publish where the requester points unless it is a
			// reply topic it may read: the gateway's client may write
			// anywhere, e.g. into the mesh. Refused requests are not run.
			b.log.Warn("control request refused", "action", req.Action, "response_topic", m.ResponseTopic, "who", from.who(b.cfg.TrustSender), "err", rerr)
			m.ResponseTopic = ""
			err = rerr
		} else if err == nil {
			data, err = b.control(ctx, req, from)
		}
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK, resp.Data = true, data
		}
		b.audit(req, from, data, err)
	}
	payload, err := marshal(resp)
	if err != nil {
		b.log.Error("control response", "err", err)
		return
	}
	if err := b.c.Reply(ctx, m, replyTo, payload); err != nil {
		b.log.Warn("control response not sent", "err", err)
	}
}

// sender is who sent m, as far as the broker vouches for it.
func (b *Bridge) sender(m Message) Sender {
	if !b.cfg.TrustSender {
		return Sender{}
	}
	return m.Sender
}

// owner keys what a sender owns: its username, else (anonymous on the
// embedded broker) its client id; "" when the broker does not say.
func (s Sender) owner() string {
	switch {
	case s.User != "":
		return "user " + s.User
	case s.ClientID != "":
		return "client " + s.ClientID
	}
	return ""
}

// sendShare names whose share of the airtime budget a message into the
// mesh uses: its owner, or, when the broker does not say (an external
// one), the share of all MQTT clients together.
func (s Sender) sendShare() string {
	if o := s.owner(); o != "" {
		return "mqtt " + o
	}
	return "mqtt"
}

func (s Sender) who(trusted bool) string {
	switch {
	case !trusted:
		return "unknown (external broker)"
	case s.User != "":
		return s.User
	}
	return "anonymous"
}

// checkResponseTopic allows MQTT 5 response topics only at or below
// <prefix>/ota/control/response, and, with the embedded broker, only those
// the requester may read.
func (b *Bridge) checkResponseTopic(m Message, from Sender) error {
	return b.checkReplyTopic(m, from, b.topic(TopicOTAResponse))
}

// auditActions names the state-changing control actions in the audit log.
var auditActions = map[string]string{
	"start": "campaign.start", "pause": "campaign.pause", "resume": "campaign.resume", "abort": "campaign.abort",
	"upload_begin": "upload.begin", "upload_end": "upload.end", "upload_abort": "upload.abort",
}

func (b *Bridge) audit(req ControlRequest, from Sender, data any, err error) {
	action, ok := auditActions[req.Action]
	if !ok {
		return
	}
	target := "campaign " + req.Campaign
	if strings.HasPrefix(req.Action, "rollout_") {
		target = rolloutAuditTarget(req, data)
	}
	switch req.Action {
	case "start":
		target = "image " + req.Image
		if c, ok := data.(fleet.Campaign); ok {
			target = "campaign " + c.ID + " of image " + req.Image
		}
	case "upload_begin":
		target = req.Role + "/" + req.Hardware + "/" + req.Version
		if st, ok := data.(UploadStatus); ok {
			target = "upload " + st.UploadID + " of " + target
		}
	case "upload_end", "upload_abort":
		target = "upload " + req.UploadID
		if img, ok := data.(fleet.Image); ok {
			target += " as image " + img.ID
		}
	}
	fleet.Audit(b.log, fleet.AuditAction{Via: "mqtt", Who: from.who(b.cfg.TrustSender), Client: from.ClientID, Action: action, Target: target, Err: err})
}

func (b *Bridge) control(ctx context.Context, req ControlRequest, from Sender) (any, error) {
	now, owner := b.cfg.Now(), from.owner()
	if strings.HasPrefix(req.Action, "rollout_") {
		return b.rolloutControl(ctx, req)
	}
	switch req.Action {
	case "start":
		if req.Image == "" {
			return nil, fmt.Errorf("start needs \"image\" (an image id or md5 from ota/announce)")
		}
		return b.svc.StartCampaign(ctx, fleet.CampaignRequest{Image: req.Image, Mode: req.Mode, Compress: req.Compress,
			Role: req.Role, Hardware: req.Hardware, Nodes: req.Nodes, Forced: req.Forced,
			Tags: req.Tags, Names: req.Names, Outdated: req.Outdated, MaxConcurrent: req.MaxConcurrent})
	case "pause", "resume", "abort", "status":
		if req.Campaign == "" {
			return nil, fmt.Errorf("%s needs \"campaign\" (a campaign id)", req.Action)
		}
		switch req.Action {
		case "pause":
			return b.svc.PauseCampaign(ctx, req.Campaign)
		case "resume":
			return b.svc.ResumeCampaign(ctx, req.Campaign)
		case "abort":
			return b.svc.AbortCampaign(ctx, req.Campaign)
		}
		return b.svc.Campaign(ctx, req.Campaign)
	case "list":
		imgs, err := b.svc.Images(ctx)
		if err != nil {
			return nil, err
		}
		cs, err := b.svc.Campaigns(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]any{"images": orEmpty(imgs), "campaigns": orEmpty(cs)}, nil
	case "upload_begin":
		return b.uploads.begin(req, owner, now)
	case "upload_chunk":
		return b.uploads.chunk(req, owner, now)
	case "upload_end":
		u, err := b.uploads.finish(req.UploadID, owner, now)
		if err != nil {
			return nil, err
		}
		// Whatever happens, the upload and its file go: a failed one is
		// begun again, as before.
		defer b.uploads.release(req.UploadID)
		r, err := u.image()
		if err != nil {
			return nil, err
		}
		img, _, err := b.svc.AddImage(ctx, fleet.ImageUpload{Role: u.role, Hardware: u.hardware, Version: u.version, MD5: u.md5, Size: u.size}, r)
		if err != nil {
			return nil, err
		}
		b.publishAnnounce(ctx)
		return img, nil
	case "upload_abort":
		if err := b.uploads.abort(req.UploadID, owner, now); err != nil {
			return nil, err
		}
		return map[string]string{"upload_id": req.UploadID}, nil
	case "":
		return nil, errors.New("missing \"action\": one of start, pause, resume, abort, status, list, upload_begin, upload_chunk, upload_end, upload_abort, " + rolloutActionList)
	}
	return nil, fmt.Errorf("unknown action %q: one of start, pause, resume, abort, status, list, upload_begin, upload_chunk, upload_end, upload_abort, %s", req.Action, rolloutActionList)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// uploads stages firmware sent over MQTT in chunks, each upload in a
// sparse file of its own in dir written at the chunks' offsets, so memory
// does not grow with the declared size. Bounded: at most maxUploads at
// once, perOwner of them per sender, each at most maxSize; one idle for
// longer than idle is dropped with its file. Upload ids are random (128
// bits), and only the sender that began an upload may add to, end or abort
// it.
type uploads struct {
	mu       sync.Mutex
	dir      string // "": a private temporary directory, made on first use
	ownDir   bool   // dir was made here and is removed by closeAll
	maxSize  int64
	perOwner int
	idle     time.Duration
	room     func(size int64) error // the store's quota, checked at begin; nil: none
	active   map[string]*upload
	closed   bool
}

type upload struct {
	owner                        string
	role, hardware, version, md5 string
	size                         int64
	chunkSize                    int
	file                         *os.File
	have                         []uint64 // bitmap of the chunks received
	total, count                 int
	touched                      time.Time
	ending                       bool // upload_end is storing it: no more chunks, not evicted
}

func (up *upload) received(i int) bool { return up.have[i/64]&(1<<(i%64)) != 0 }

// discard closes and removes the staging file.
func (up *upload) discard() {
	up.file.Close()
	os.Remove(up.file.Name())
}

const (
	maxUploads      = 4
	defaultPerOwner = 2
	defaultIdle     = 60 * time.Second
	maxChunkBytes   = 256 << 10
	// maxChunks bounds an upload's bitmap (8 KiB): a 16 MiB image needs
	// chunks of at least 256 bytes.
	maxChunks     = 1 << 16
	uploadIDBytes = 16
	// stagingPattern names the staging files; PrepareUploadDir removes
	// those a previous run left behind.
	stagingPattern = "upload-*"
)

func newUploads(dir string, maxSize int64, perOwner int, idle time.Duration, room func(int64) error) *uploads {
	if perOwner <= 0 {
		perOwner = defaultPerOwner
	}
	if idle <= 0 {
		idle = defaultIdle
	}
	return &uploads{dir: dir, maxSize: maxSize, perOwner: perOwner, idle: idle, room: room, active: map[string]*upload{}}
}

// PrepareUploadDir makes dir (mode 0700: the files are images not yet
// checked) for the staging files of MQTT uploads, and removes the staging
// files an earlier run left behind.
func PrepareUploadDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("upload staging directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("upload staging directory: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, stagingPattern))
	if err != nil {
		return fmt.Errorf("upload staging directory: %w", err)
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("upload staging directory: removing a leftover upload: %w", err)
		}
	}
	return nil
}

// UploadStatus is the data of upload responses.
type UploadStatus struct {
	UploadID string `json:"upload_id"`
	Received int    `json:"chunks_received"`
	Total    int    `json:"chunks_total"`
}

// sweepLocked drops the uploads idle for too long, with their files.
func (u *uploads) sweepLocked(now time.Time) {
	for k, v := range u.active {
		if !v.ending && now.Sub(v.touched) > u.idle {
			v.discard()
			delete(u.active, k)
		}
	}
}

// getLocked is the upload id of owner, or an error for what.
func (u *uploads) getLocked(what, id, owner string, now time.Time) (*upload, error) {
	u.sweepLocked(now)
	up, ok := u.active[id]
	if !ok {
		return nil, fmt.Errorf("%s: no upload %q in progress (expired after %s without a chunk, finished, or never begun)", what, id, u.idle)
	}
	if up.owner != owner {
		return nil, fmt.Errorf("%s: upload %q was begun by another client", what, id)
	}
	if up.ending {
		return nil, fmt.Errorf("%s: upload %q is being stored (upload_end)", what, id)
	}
	return up, nil
}

// stagingDirLocked is where staging files go, made on first use when the
// gateway gave no directory.
func (u *uploads) stagingDirLocked() (string, error) {
	if u.dir == "" {
		d, err := os.MkdirTemp("", "meshfleet-uploads-")
		if err != nil {
			return "", fmt.Errorf("upload_begin: no staging directory: %w", err)
		}
		u.dir, u.ownDir = d, true
	}
	return u.dir, nil
}

func (u *uploads) begin(req ControlRequest, owner string, now time.Time) (UploadStatus, error) {
	switch {
	case req.Role == "" || req.Hardware == "" || req.Version == "":
		return UploadStatus{}, errors.New("upload_begin needs role, hardware and version")
	case req.Size <= 0 || req.Size > u.maxSize:
		return UploadStatus{}, fmt.Errorf("upload_begin: size %d must be 1..%d bytes (firmware.max_upload_size)", req.Size, u.maxSize)
	case req.ChunkSize <= 0 || req.ChunkSize > maxChunkBytes:
		return UploadStatus{}, fmt.Errorf("upload_begin: chunk_size %d must be 1..%d", req.ChunkSize, maxChunkBytes)
	}
	n := (req.Size + int64(req.ChunkSize) - 1) / int64(req.ChunkSize)
	if n > maxChunks {
		return UploadStatus{}, fmt.Errorf("upload_begin: size %d in chunks of %d bytes is %d chunks, at most %d: use chunk_size %d or more",
			req.Size, req.ChunkSize, n, maxChunks, (req.Size+maxChunks-1)/maxChunks)
	}
	if _, err := hex.DecodeString(req.MD5); err != nil || len(req.MD5) != 32 {
		return UploadStatus{}, fmt.Errorf("upload_begin: md5 %q must be 32 hex digits (MD5 of the whole image)", req.MD5)
	}
	if u.room != nil {
		if err := u.room(req.Size); err != nil {
			return UploadStatus{}, fmt.Errorf("upload_begin: %w", err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return UploadStatus{}, errors.New("upload_begin: the gateway is stopping")
	}
	u.sweepLocked(now)
	if len(u.active) >= maxUploads {
		return UploadStatus{}, fmt.Errorf("upload_begin: %d uploads already in progress; finish or abort one, or wait %s for an idle one to expire", maxUploads, u.idle)
	}
	if owner != "" {
		mine := 0
		for _, v := range u.active {
			if v.owner == owner {
				mine++
			}
		}
		if mine >= u.perOwner {
			return UploadStatus{}, fmt.Errorf("upload_begin: you already have %d uploads in progress (mqtt.uploads.per_client); finish or abort one", mine)
		}
	}
	dir, err := u.stagingDirLocked()
	if err != nil {
		return UploadStatus{}, err
	}
	f, err := os.CreateTemp(dir, stagingPattern)
	if err != nil {
		return UploadStatus{}, fmt.Errorf("upload_begin: staging file: %w", err)
	}
	// Sparse: the file takes disk space only for the chunks written.
	if err := f.Truncate(req.Size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return UploadStatus{}, fmt.Errorf("upload_begin: staging file: %w", err)
	}
	var raw [uploadIDBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	id := hex.EncodeToString(raw[:])
	u.active[id] = &upload{owner: owner, role: req.Role, hardware: req.Hardware, version: req.Version, md5: strings.ToLower(req.MD5),
		size: req.Size, chunkSize: req.ChunkSize, file: f, have: make([]uint64, (n+63)/64), total: int(n), touched: now}
	return UploadStatus{UploadID: id, Total: int(n)}, nil
}

func (u *uploads) chunk(req ControlRequest, owner string, now time.Time) (UploadStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, err := u.getLocked("upload_chunk", req.UploadID, owner, now)
	if err != nil {
		return UploadStatus{}, err
	}
	if req.Index < 0 || req.Index >= up.total {
		return UploadStatus{}, fmt.Errorf("upload_chunk: index %d out of range 0..%d", req.Index, up.total-1)
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: data is not standard base64: %v", req.Index, err)
	}
	off := int64(req.Index) * int64(up.chunkSize)
	want := min(int64(up.chunkSize), up.size-off)
	if int64(len(data)) != want {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: %d bytes, want %d", req.Index, len(data), want)
	}
	if req.CRC32 != nil && crc32.ChecksumIEEE(data) != *req.CRC32 {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: crc32 mismatch (got %08x, sent %08x); resend the chunk", req.Index, crc32.ChecksumIEEE(data), *req.CRC32)
	}
	if _, err := up.file.WriteAt(data, off); err != nil {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: staging file: %w", req.Index, err)
	}
	if !up.received(req.Index) {
		up.have[req.Index/64] |= 1 << (req.Index % 64)
		up.count++
	}
	up.touched = now
	return UploadStatus{UploadID: req.UploadID, Received: up.count, Total: up.total}, nil
}

// finish checks that upload id is complete and marks it ending; the
// caller stores it (stagedImage) and then calls release.
func (u *uploads) finish(id, owner string, now time.Time) (*upload, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, err := u.getLocked("upload_end", id, owner, now)
	if err != nil {
		return nil, err
	}
	if up.count != up.total {
		var missing []int
		for i := 0; i < up.total && len(missing) < 20; i++ {
			if !up.received(i) {
				missing = append(missing, i)
			}
		}
		return nil, fmt.Errorf("upload_end: %d of %d chunks missing (first: %v)", up.total-up.count, up.total, missing)
	}
	up.ending = true
	return up, nil
}

// image is the staged image, after checking its MD5 against upload_begin's.
func (up *upload) image() (io.Reader, error) {
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(up.file, 0, up.size)); err != nil {
		return nil, fmt.Errorf("upload_end: reading the staging file: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != up.md5 {
		return nil, fmt.Errorf("upload_end: md5 of the assembled image is %s, upload_begin said %s; upload discarded", got, up.md5)
	}
	return io.NewSectionReader(up.file, 0, up.size), nil
}

// release drops upload id (ended, stored or not) with its file.
func (u *uploads) release(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.active[id]; ok {
		up.discard()
		delete(u.active, id)
	}
}

func (u *uploads) abort(id, owner string, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, err := u.getLocked("upload_abort", id, owner, now)
	if err != nil {
		return err
	}
	up.discard()
	delete(u.active, id)
	return nil
}

// closeAll drops every upload not being stored, with its file, and takes
// no more (the gateway is stopping); an upload being stored is dropped by
// its release.
func (u *uploads) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for k, v := range u.active {
		if !v.ending {
			v.discard()
			delete(u.active, k)
		}
	}
	if u.ownDir && len(u.active) == 0 {
		os.RemoveAll(u.dir)
	}
}

// open counts the uploads in progress and their staging files (tests).
func (u *uploads) open() (uploads int, files []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dir != "" {
		files, _ = filepath.Glob(filepath.Join(u.dir, stagingPattern))
	}
	return len(u.active), files
}
