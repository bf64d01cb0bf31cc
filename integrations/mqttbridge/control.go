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
	// Upload fields.
	UploadID  string  `json:"upload_id,omitempty"`
	Version   string  `json:"version,omitempty"`
	Size      int64   `json:"size,omitempty"`
	ChunkSize int     `json:"chunk_size,omitempty"`
	MD5       string  `json:"md5,omitempty"`
	Index     int     `json:"index,omitempty"`
	Data      string  `json:"data,omitempty"`  // base64 (standard) chunk bytes
	CRC32     *uint32 `json:"crc32,omitempty"` // IEEE CRC of the chunk bytes
}

// ControlResponse answers one request on <prefix>/ota/control/response.
type ControlResponse struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	Action        string `json:"action"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
	Data          any    `json:"data,omitempty"`
}

func (b *Bridge) handleControl(ctx context.Context, m Message) {
	var req ControlRequest
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.DisallowUnknownFields()
	resp := ControlResponse{}
	from := b.sender(m)
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
	} else {
		resp.CorrelationID, resp.Action = req.CorrelationID, req.Action
		var data any
		err := b.checkResponseTopic(m, from)
		if err != nil {
			// Never publish where the requester points unless it is a
			// reply topic it may read: the gateway's client may write
			// anywhere, e.g. into the mesh. Refused requests are not run.
			b.log.Warn("control request refused", "action", req.Action, "response_topic", m.ResponseTopic, "who", from.who(b.cfg.TrustSender), "err", err)
			m.ResponseTopic = ""
		} else {
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
	if err := b.c.Reply(ctx, m, b.topic(TopicOTAResponse), payload); err != nil {
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
	rt := m.ResponseTopic
	if rt == "" {
		return nil
	}
	base := b.topic(TopicOTAResponse)
	if (rt != base && !strings.HasPrefix(rt, base+"/")) || strings.ContainsAny(rt, "+#") {
		return fmt.Errorf("response topic %q refused: replies go only to %s or a topic below it", rt, base)
	}
	if b.cfg.MayRead != nil && !b.cfg.MayRead(from.User, rt) {
		return fmt.Errorf("response topic %q refused: you may not read it", rt)
	}
	return nil
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
	switch req.Action {
	case "start":
		if req.Image == "" {
			return nil, fmt.Errorf("start needs \"image\" (an image id or md5 from ota/announce)")
		}
		return b.svc.StartCampaign(ctx, fleet.CampaignRequest{Image: req.Image, Mode: req.Mode, Compress: req.Compress,
			Role: req.Role, Hardware: req.Hardware, Nodes: req.Nodes, Forced: req.Forced})
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
		img, _, err := b.svc.AddImage(ctx, fleet.ImageUpload{Role: u.role, Hardware: u.hardware, Version: u.version, MD5: u.md5, Size: int64(len(u.data))}, bytes.NewReader(u.data))
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
		return nil, errors.New("missing \"action\": one of start, pause, resume, abort, status, list, upload_begin, upload_chunk, upload_end, upload_abort")
	}
	return nil, fmt.Errorf("unknown action %q: one of start, pause, resume, abort, status, list, upload_begin, upload_chunk, upload_end, upload_abort", req.Action)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// uploads assembles firmware sent over MQTT in chunks. Memory is bounded:
// at most maxUploads at once, perOwner of them per sender, each at most
// maxSize; one idle for longer than idle is dropped. Upload ids are random
// (128 bits), and only the sender that began an upload may add to, end or
// abort it.
type uploads struct {
	mu       sync.Mutex
	maxSize  int64
	perOwner int
	idle     time.Duration
	active   map[string]*upload
}

type upload struct {
	owner                        string
	role, hardware, version, md5 string
	chunkSize                    int
	data                         []byte
	have                         []bool
	count                        int
	touched                      time.Time
}

const (
	maxUploads      = 4
	defaultPerOwner = 2
	defaultIdle     = 60 * time.Second
	maxChunkBytes   = 256 << 10
	uploadIDBytes   = 16
)

func newUploads(maxSize int64, perOwner int, idle time.Duration) *uploads {
	if perOwner <= 0 {
		perOwner = defaultPerOwner
	}
	if idle <= 0 {
		idle = defaultIdle
	}
	return &uploads{maxSize: maxSize, perOwner: perOwner, idle: idle, active: map[string]*upload{}}
}

// UploadStatus is the data of upload responses.
type UploadStatus struct {
	UploadID string `json:"upload_id"`
	Received int    `json:"chunks_received"`
	Total    int    `json:"chunks_total"`
}

// sweepLocked drops the uploads idle for too long.
func (u *uploads) sweepLocked(now time.Time) {
	for k, v := range u.active {
		if now.Sub(v.touched) > u.idle {
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
	return up, nil
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
	if _, err := hex.DecodeString(req.MD5); err != nil || len(req.MD5) != 32 {
		return UploadStatus{}, fmt.Errorf("upload_begin: md5 %q must be 32 hex digits (MD5 of the whole image)", req.MD5)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
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
	var raw [uploadIDBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	id := hex.EncodeToString(raw[:])
	n := int((req.Size + int64(req.ChunkSize) - 1) / int64(req.ChunkSize))
	u.active[id] = &upload{owner: owner, role: req.Role, hardware: req.Hardware, version: req.Version, md5: req.MD5,
		chunkSize: req.ChunkSize, data: make([]byte, req.Size), have: make([]bool, n), touched: now}
	return UploadStatus{UploadID: id, Total: n}, nil
}

func (u *uploads) chunk(req ControlRequest, owner string, now time.Time) (UploadStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, err := u.getLocked("upload_chunk", req.UploadID, owner, now)
	if err != nil {
		return UploadStatus{}, err
	}
	if req.Index < 0 || req.Index >= len(up.have) {
		return UploadStatus{}, fmt.Errorf("upload_chunk: index %d out of range 0..%d", req.Index, len(up.have)-1)
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: data is not standard base64: %v", req.Index, err)
	}
	off := req.Index * up.chunkSize
	want := min(up.chunkSize, len(up.data)-off)
	if len(data) != want {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: %d bytes, want %d", req.Index, len(data), want)
	}
	if req.CRC32 != nil && crc32.ChecksumIEEE(data) != *req.CRC32 {
		return UploadStatus{}, fmt.Errorf("upload_chunk %d: crc32 mismatch (got %08x, sent %08x); resend the chunk", req.Index, crc32.ChecksumIEEE(data), *req.CRC32)
	}
	copy(up.data[off:], data)
	if !up.have[req.Index] {
		up.have[req.Index] = true
		up.count++
	}
	up.touched = now
	return UploadStatus{UploadID: req.UploadID, Received: up.count, Total: len(up.have)}, nil
}

func (u *uploads) finish(id, owner string, now time.Time) (*upload, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, err := u.getLocked("upload_end", id, owner, now)
	if err != nil {
		return nil, err
	}
	if up.count != len(up.have) {
		var missing []int
		for i, h := range up.have {
			if !h && len(missing) < 20 {
				missing = append(missing, i)
			}
		}
		return nil, fmt.Errorf("upload_end: %d of %d chunks missing (first: %v)", len(up.have)-up.count, len(up.have), missing)
	}
	sum := md5.Sum(up.data)
	if got := hex.EncodeToString(sum[:]); got != up.md5 {
		delete(u.active, id)
		return nil, fmt.Errorf("upload_end: md5 of the assembled image is %s, upload_begin said %s; upload discarded", got, up.md5)
	}
	delete(u.active, id)
	return up, nil
}

func (u *uploads) abort(id, owner string, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, err := u.getLocked("upload_abort", id, owner, now); err != nil {
		return err
	}
	delete(u.active, id)
	return nil
}
