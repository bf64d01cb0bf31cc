package ota

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/protocol"
)

// Extension package types. The OTA range is 720–739 (the status
// extensions use 700–719). Every extension package carries an explicit
// integer "routing" so stock relays forward it by its routing and stock
// nodes, which have no handler for these types, drop it (docs/protocol.md §1.5,
// The formats are specified in PROTOCOL.md next to this file.
const (
	TypeOffer  = 720 // distributor → all (2): a transfer and how to fetch it
	TypeNeed   = 721 // receiver → distributor (1) or parent (0): chunks wanted
	TypeChunk  = 722 // distributor → all (2) push; → one (1) or child (0) repair
	TypeReport = 723 // receiver → distributor (1): state and progress
	TypeRefuse = 724 // node → child (0): "I do not hold this transfer"
	TypeEnd    = 725 // distributor → all (2): a push pass is complete
)

// ErrMalformed reports an extension package that cannot be used.
var ErrMalformed = errors.New("ota: malformed package")

// ErrUntrusted reports a chunk from a node that is neither the distributor
// of its transfer nor the receiver's parent towards it.
var ErrUntrusted = errors.New("ota: chunk from an untrusted node")

// Offer announces a transfer to Go receivers (type 720, routing 2). It
// travels next to the stock Announce, which stock receivers keep using.
type Offer struct {
	From      uint32 `json:"from"`
	Routing   int    `json:"routing"`
	Type      int    `json:"type"`
	ID        string `json:"id"`  // transfer id (campaign id)
	MD5       string `json:"md5"` // uncompressed image, lowercase hex
	Role      string `json:"role"`
	Hardware  string `json:"hardware"`
	Version   string `json:"version,omitempty"`
	Size      int64  `json:"size"`          // uncompressed image bytes
	Mode      string `json:"mode"`          // stock | pipelined | broadcast
	Method    string `json:"method"`        // none | deflate | heatshrink
	TSize     int64  `json:"tsize"`         // transferred (compressed) bytes
	TMD5      string `json:"tmd5"`          // md5 of the transferred bytes
	ChunkSize int    `json:"cs"`            // bytes per chunk (last may be shorter)
	Chunks    int    `json:"n"`             // number of chunks
	Encoding  string `json:"enc"`           // chunk payload text encoding: b91 | b64
	Signature string `json:"sig,omitempty"` // base64 ed25519 signature over the image
	// Manifest is the base64 of the image's signed manifest (the exact
	// bytes signed, firmware.Manifest) and ManifestSig the base64 of its
	// signature.
	Manifest    string `json:"manifest,omitempty"`
	ManifestSig string `json:"msig,omitempty"`
	Forced      bool   `json:"forced,omitempty"`
	Window      int    `json:"win,omitempty"` // pipelined: suggested outstanding chunks
	// Nodes, when not empty, are the only receivers the offer is for
	// (the campaign's node list, or a part of it: see splitOffer);
	// others of the role and hardware ignore it. Absent for a campaign
	// that targets the whole role.
	Nodes []uint32 `json:"nodes,omitempty"`
}

// For reports whether the offer is for node id.
func (o *Offer) For(id uint32) bool {
	return len(o.Nodes) == 0 || slices.Contains(o.Nodes, id)
}

// MaxOfferNodes bounds the node list a receiver reads from one offer
// (more than a package within the mesh's 8192-byte limit can carry).
const MaxOfferNodes = 4096

// splitOffer returns the offers that carry base to nodes: one without a
// list for a whole role, else as few as fit the list into packages of at
// most limit bytes (with the dest a unicast copy adds), each node in one.
func splitOffer(base Offer, nodes []uint32, limit int) []Offer {
	base.Type = TypeOffer
	if len(nodes) == 0 {
		base.Nodes = nil
		return []Offer{base}
	}
	base.Nodes = nil
	room := limit - len(appendJSON(nil, &base)) - len(`,"nodes":[]`) - len(`,"dest":4294967295`)
	var out []Offer
	var part []uint32
	used := 0
	for _, id := range nodes {
		n := len(strconv.FormatUint(uint64(id), 10)) + 1 // the id and a comma
		if len(part) > 0 && (used+n > room || len(part) == MaxOfferNodes) {
			o := base
			o.Nodes = part
			out = append(out, o)
			part, used = nil, 0
		}
		part = append(part, id)
		used += n
	}
	o := base
	o.Nodes = part
	return append(out, o)
}

// offerTo is an Offer sent to one receiver (routing 1) that lost the
// broadcast one: the same keys plus dest.
type offerTo struct {
	Offer
	dest uint32
}

func (o *offerTo) PackageType() int { return TypeOffer }

func (o *offerTo) AppendJSON(dst []byte) []byte {
	o.Type = TypeOffer
	b := appendJSON(nil, &o.Offer)
	dst = append(dst, b[:len(b)-1]...)
	dst = append(dst, `,"dest":`...)
	dst = strconv.AppendUint(dst, uint64(o.dest), 10)
	return append(dst, '}')
}

// Need asks for chunks (type 721): routing 1 to the distributor, or
// routing 0 to the parent, which serves it from its own copy.
type Need struct {
	From    uint32 `json:"from"`
	Dest    uint32 `json:"dest"`
	Routing int    `json:"routing"`
	Type    int    `json:"type"`
	ID      string `json:"id"`
	Parts   string `json:"parts"` // chunk ranges (FormatRanges); empty: resend the offer
}

// Chunk carries one chunk (type 722).
type Chunk struct {
	From    uint32 `json:"from"`
	Dest    uint32 `json:"dest,omitempty"`
	Routing int    `json:"routing"`
	Type    int    `json:"type"`
	ID      string `json:"id"`
	Index   int    `json:"i"`
	Data    string `json:"d"` // Dense (b91) or base64 text of the chunk
}

// Report is a receiver's state (type 723), sent to the distributor on
// every state change and periodically while downloading.
type Report struct {
	From    uint32 `json:"from"`
	Dest    uint32 `json:"dest"`
	Routing int    `json:"routing"`
	Type    int    `json:"type"`
	ID      string `json:"id"`
	State   string `json:"state"`
	Have    int    `json:"have"`             // chunks held
	Total   int    `json:"total"`            // chunks in the transfer
	High    int    `json:"hi"`               // highest pushed index seen + 1
	Lost    int    `json:"lost"`             // push chunks found missing (cumulative)
	Active  string `json:"active,omitempty"` // md5 of the running image
	Error   string `json:"err,omitempty"`
}

// Refuse tells a child that its parent does not hold the transfer (type
// 724, routing 0), so the child asks the distributor instead. From the
// transfer's distributor with Over (routing 1), it says the transfer is
// over there (superseded, aborted or through), so the receiver drops it.
type Refuse struct {
	From    uint32 `json:"from"`
	Dest    uint32 `json:"dest"`
	Routing int    `json:"routing"`
	Type    int    `json:"type"`
	ID      string `json:"id"`
	Over    bool   `json:"over,omitempty"`
}

// End marks the end of one push pass (type 725, routing 2).
type End struct {
	From    uint32 `json:"from"`
	Routing int    `json:"routing"`
	Type    int    `json:"type"`
	ID      string `json:"id"`
	Sent    int    `json:"sent"` // chunks pushed in the pass
}

// PackageType implements protocol.Package.
func (o *Offer) PackageType() int  { return TypeOffer }
func (n *Need) PackageType() int   { return TypeNeed }
func (c *Chunk) PackageType() int  { return TypeChunk }
func (r *Report) PackageType() int { return TypeReport }
func (r *Refuse) PackageType() int { return TypeRefuse }
func (e *End) PackageType() int    { return TypeEnd }

// AppendJSON implements protocol.Package.
func (o *Offer) AppendJSON(dst []byte) []byte  { o.Type = TypeOffer; return appendJSON(dst, o) }
func (n *Need) AppendJSON(dst []byte) []byte   { n.Type = TypeNeed; return appendJSON(dst, n) }
func (r *Report) AppendJSON(dst []byte) []byte { r.Type = TypeReport; return appendJSON(dst, r) }
func (r *Refuse) AppendJSON(dst []byte) []byte { r.Type = TypeRefuse; return appendJSON(dst, r) }
func (e *End) AppendJSON(dst []byte) []byte    { e.Type = TypeEnd; return appendJSON(dst, e) }

// AppendJSON implements protocol.Package. Chunks are the bulk of the
// traffic, so they are written by hand (no reflection, no copy of the
// payload through a string escaper: Dense and base64 text need none).
func (c *Chunk) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"from":`...)
	dst = strconv.AppendUint(dst, uint64(c.From), 10)
	if c.Dest != 0 {
		dst = append(dst, `,"dest":`...)
		dst = strconv.AppendUint(dst, uint64(c.Dest), 10)
	}
	dst = append(dst, `,"routing":`...)
	dst = strconv.AppendInt(dst, int64(c.Routing), 10)
	dst = append(dst, `,"type":722,"id":`...)
	dst = strconv.AppendQuote(dst, c.ID)
	dst = append(dst, `,"i":`...)
	dst = strconv.AppendInt(dst, int64(c.Index), 10)
	dst = append(dst, `,"d":"`...)
	dst = append(dst, c.Data...)
	return append(dst, '"', '}')
}

func appendJSON(dst []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain strings, ints and bools: Marshal cannot fail.
		panic(fmt.Sprintf("ota: encoding %T: %v", v, err))
	}
	return append(dst, b...)
}

// decodeExt decodes an extension package of a known type into v.
func decodeExt(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// DecodeOffer decodes and checks a type 720 package.
func DecodeOffer(raw []byte) (*Offer, error) {
	var o Offer
	if err := decodeExt(raw, &o); err != nil {
		return nil, err
	}
	switch {
	case !validMD5(o.MD5) || !validMD5(o.TMD5):
		return nil, fmt.Errorf("%w: offer md5 %q tmd5 %q", ErrMalformed, o.MD5, o.TMD5)
	case o.ID == "" || len(o.ID) > 64:
		return nil, fmt.Errorf("%w: offer id %q", ErrMalformed, o.ID)
	case o.ChunkSize <= 0 || o.ChunkSize > MaxChunkSize || o.Chunks <= 0 || o.TSize <= 0 || o.Size <= 0:
		return nil, fmt.Errorf("%w: offer sizes cs=%d n=%d tsize=%d size=%d", ErrMalformed, o.ChunkSize, o.Chunks, o.TSize, o.Size)
	case int64(o.Chunks) != (o.TSize+int64(o.ChunkSize)-1)/int64(o.ChunkSize):
		return nil, fmt.Errorf("%w: offer n=%d does not match tsize %d / cs %d", ErrMalformed, o.Chunks, o.TSize, o.ChunkSize)
	case o.Encoding != EncDense && o.Encoding != EncBase64:
		return nil, fmt.Errorf("%w: offer encoding %q", ErrMalformed, o.Encoding)
	case len(o.Manifest) > base64.StdEncoding.EncodedLen(firmware.MaxManifestSize) || len(o.ManifestSig) > 128 || len(o.Signature) > 128:
		return nil, fmt.Errorf("%w: offer manifest %d, msig %d, sig %d characters", ErrMalformed, len(o.Manifest), len(o.ManifestSig), len(o.Signature))
	case len(o.Nodes) > MaxOfferNodes:
		return nil, fmt.Errorf("%w: offer lists %d nodes (at most %d)", ErrMalformed, len(o.Nodes), MaxOfferNodes)
	}
	if _, err := ParseMode(o.Mode); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &o, nil
}

// DecodeNeed decodes a type 721 package.
func DecodeNeed(raw []byte) (*Need, error) {
	var n Need
	if err := decodeExt(raw, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// DecodeChunk decodes a type 722 package.
func DecodeChunk(raw []byte) (*Chunk, error) {
	var c Chunk
	if err := decodeExt(raw, &c); err != nil {
		return nil, err
	}
	if c.Index < 0 {
		return nil, fmt.Errorf("%w: chunk index %d", ErrMalformed, c.Index)
	}
	return &c, nil
}

// DecodeReport decodes a type 723 package.
func DecodeReport(raw []byte) (*Report, error) {
	var r Report
	if err := decodeExt(raw, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeRefuse decodes a type 724 package.
func DecodeRefuse(raw []byte) (*Refuse, error) {
	var r Refuse
	if err := decodeExt(raw, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeEnd decodes a type 725 package.
func DecodeEnd(raw []byte) (*End, error) {
	var e End
	if err := decodeExt(raw, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Chunk payload encodings named in Offer.Encoding.
const (
	EncDense  = "b91"
	EncBase64 = "b64"
)

// MaxChunkSize bounds the chunk size a receiver accepts.
const MaxChunkSize = 64 << 10

func validMD5(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

var _ protocol.Package = (*Chunk)(nil)
