package mqttbridge

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
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
		data, err := b.control(ctx, req)
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK, resp.Data = true, data
		}
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

func (b *Bridge) control(ctx context.Context, req ControlRequest) (any, error) {
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
			return b.svc.PauseCampaign(req.Campaign)
		case "resume":
			return b.svc.ResumeCampaign(req.Campaign)
		case "abort":
			return b.svc.AbortCampaign(req.Campaign)
		}
		return b.svc.Campaign(req.Campaign)
	case "list":
		imgs, err := b.svc.Images()
		if err != nil {
			return nil, err
		}
		return map[string]any{"images": orEmpty(imgs), "campaigns": orEmpty(b.svc.Campaigns())}, nil
	case "upload_begin":
		return b.uploads.begin(req, b.cfg.Now())
	case "upload_chunk":
		return b.uploads.chunk(req, b.cfg.Now())
	case "upload_end":
		u, err := b.uploads.finish(req.UploadID)
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
		b.uploads.abort(req.UploadID)
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
// at most maxUploads at once, each at most maxSize, idle ones expire.
type uploads struct {
	mu      sync.Mutex
	maxSize int64
	next    int
	active  map[string]*upload
}

type upload struct {
	role, hardware, version, md5 string
	chunkSize                    int
	data                         []byte
	have                         []bool
	count                        int
	touched                      time.Time
}

const (
	maxUploads    = 4
	uploadIdle    = 10 * time.Minute
	maxChunkBytes = 256 << 10
)

func newUploads(maxSize int64) *uploads {
	return &uploads{maxSize: maxSize, active: map[string]*upload{}}
}

// UploadStatus is the data of upload responses.
type UploadStatus struct {
	UploadID string `json:"upload_id"`
	Received int    `json:"chunks_received"`
	Total    int    `json:"chunks_total"`
}

func (u *uploads) begin(req ControlRequest, now time.Time) (UploadStatus, error) {
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
	for k, v := range u.active {
		if now.Sub(v.touched) > uploadIdle {
			delete(u.active, k)
		}
	}
	if len(u.active) >= maxUploads {
		return UploadStatus{}, fmt.Errorf("upload_begin: %d uploads already in progress; finish or abort one", maxUploads)
	}
	u.next++
	id := "u" + strconv.Itoa(u.next)
	n := int((req.Size + int64(req.ChunkSize) - 1) / int64(req.ChunkSize))
	u.active[id] = &upload{role: req.Role, hardware: req.Hardware, version: req.Version, md5: req.MD5,
		chunkSize: req.ChunkSize, data: make([]byte, req.Size), have: make([]bool, n), touched: now}
	return UploadStatus{UploadID: id, Total: n}, nil
}

func (u *uploads) chunk(req ControlRequest, now time.Time) (UploadStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, ok := u.active[req.UploadID]
	if !ok {
		return UploadStatus{}, fmt.Errorf("upload_chunk: no upload %q in progress (expired, finished or never begun)", req.UploadID)
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

func (u *uploads) finish(id string) (*upload, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, ok := u.active[id]
	if !ok {
		return nil, fmt.Errorf("upload_end: no upload %q in progress", id)
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

func (u *uploads) abort(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.active, id)
}
