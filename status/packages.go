package status

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// Extension package types of the status system. The range 700–719 is
// reserved for status and telemetry extensions (status/PROTOCOL.md). Every
// package carries an integer "routing", so stock nodes relay the packages
// and ignore them otherwise (docs/protocol.md §1.5, §5.2).
const (
	TypeTelemetry        = 700 // node → collector: one telemetry frame
	TypeStatusQuery      = 701 // collector → node(s): send a status report
	TypeStatusReport     = 702 // node → collector: the answer to a query
	TypeTelemetryControl = 703 // collector → node: send a keyframe now
	TypeTelemetryBundle  = 704 // relay → collector: several nodes' telemetry frames
)

// First and last type number reserved for status extensions.
const (
	firstExtensionType = 700
	lastExtensionType  = 719
)

// maxQueryTargets bounds the target list of a query (a hostile list is
// refused rather than allocated).
const maxQueryTargets = 4096

// Errors of Decode.
var (
	ErrNotStatus  = errors.New("status: not a status extension package")
	ErrBadPackage = errors.New("status: malformed status package")
)

// ReportForm is the form a queried node answers in.
type ReportForm string

// Report forms.
const (
	FormFull     ReportForm = "full"     // a StatusReport (702) with every Metrics field
	FormEnhanced ReportForm = "enhanced" // a stock EnhancedStatusPackage (604), sent to the querier
)

// TelemetryPackage (700) carries one telemetry frame to the collector.
//
//	{"from":N,"dest":C,"routing":1,"type":700,"frame":"<base64>"}
type TelemetryPackage struct {
	From, Dest uint32
	Frame      []byte
}

// TelemetryBundle (704) carries several nodes' telemetry frames from a
// relay to the collector (telemetry.ParseBundle gives the layout).
//
//	{"from":R,"dest":C,"routing":1,"type":704,"frames":"<base64>"}
type TelemetryBundle struct {
	From, Dest uint32
	Entries    []telemetry.BundleEntry
}

// StatusQuery (701) asks nodes for a report. With Dest set it is sent to
// that node only (routing 1); with Dest 0 it is broadcast (routing 2) and
// every node listed in Targets answers, or every node if Targets is empty.
// A node that answers a broadcast waits a delay drawn from [0, Spread)
// by its id and the query id, so that replies do not all arrive at once.
//
//	{"from":C,"routing":2,"type":701,"qid":7,"targets":[1,2],"form":"full","spread":2000}
type StatusQuery struct {
	From, Dest uint32
	ID         uint32
	Targets    []uint32
	Form       ReportForm
	Spread     time.Duration // on the wire in ms
}

// StatusReport (702) answers a query with a node's full metrics.
//
//	{"from":N,"dest":C,"routing":1,"type":702,"qid":7,"metrics":{...}}
type StatusReport struct {
	From, Dest uint32
	QueryID    uint32
	Metrics    Metrics
}

// TelemetryControl (703) asks a node's telemetry encoder for a keyframe.
//
//	{"from":C,"dest":N,"routing":1,"type":703,"keyframe":true}
type TelemetryControl struct {
	From, Dest uint32
	Keyframe   bool
}

type wireHeader struct {
	From    uint32           `json:"from"`
	Dest    uint32           `json:"dest,omitempty"`
	Routing protocol.Routing `json:"routing"`
	Type    int              `json:"type"`
}

type wireTelemetry struct {
	wireHeader
	Frame string `json:"frame"`
}

type wireBundle struct {
	wireHeader
	Frames string `json:"frames"`
}

type wireQuery struct {
	wireHeader
	ID      uint32     `json:"qid"`
	Targets []uint32   `json:"targets"`
	Form    ReportForm `json:"form,omitempty"`
	Spread  int64      `json:"spread,omitempty"`
}

type wireReport struct {
	wireHeader
	QueryID uint32  `json:"qid"`
	Metrics Metrics `json:"metrics"`
}

type wireControl struct {
	wireHeader
	Keyframe bool `json:"keyframe"`
}

func single(from, dest uint32, typ int) wireHeader {
	return wireHeader{From: from, Dest: dest, Routing: protocol.RouteSingle, Type: typ}
}

// appendJSON marshals a wire struct; they hold nothing encoding/json can
// fail on.
func appendJSON(dst []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("status: marshal %T: %v", v, err))
	}
	return append(dst, b...)
}

// PackageType is TypeTelemetry.
func (p *TelemetryPackage) PackageType() int { return TypeTelemetry }

// AppendJSON appends the package's JSON.
func (p *TelemetryPackage) AppendJSON(dst []byte) []byte {
	return appendJSON(dst, wireTelemetry{single(p.From, p.Dest, TypeTelemetry), base64.StdEncoding.EncodeToString(p.Frame)})
}

// PackageType is TypeTelemetryBundle.
func (p *TelemetryBundle) PackageType() int { return TypeTelemetryBundle }

// AppendJSON appends the package's JSON.
func (p *TelemetryBundle) AppendJSON(dst []byte) []byte {
	b := telemetry.AppendBundleHeader(nil)
	for _, e := range p.Entries {
		b = telemetry.AppendBundleEntry(b, e)
	}
	return appendJSON(dst, wireBundle{single(p.From, p.Dest, TypeTelemetryBundle), base64.StdEncoding.EncodeToString(b)})
}

// PackageType is TypeStatusQuery.
func (p *StatusQuery) PackageType() int { return TypeStatusQuery }

// AppendJSON appends the package's JSON.
func (p *StatusQuery) AppendJSON(dst []byte) []byte {
	h := single(p.From, p.Dest, TypeStatusQuery)
	if p.Dest == 0 {
		h.Routing = protocol.RouteBroadcast
	}
	t := p.Targets
	if t == nil {
		t = []uint32{}
	}
	return appendJSON(dst, wireQuery{h, p.ID, t, p.Form, p.Spread.Milliseconds()})
}

// PackageType is TypeStatusReport.
func (p *StatusReport) PackageType() int { return TypeStatusReport }

// AppendJSON appends the package's JSON.
func (p *StatusReport) AppendJSON(dst []byte) []byte {
	return appendJSON(dst, wireReport{single(p.From, p.Dest, TypeStatusReport), p.QueryID, p.Metrics})
}

// PackageType is TypeTelemetryControl.
func (p *TelemetryControl) PackageType() int { return TypeTelemetryControl }

// AppendJSON appends the package's JSON.
func (p *TelemetryControl) AppendJSON(dst []byte) []byte {
	return appendJSON(dst, wireControl{single(p.From, p.Dest, TypeTelemetryControl), p.Keyframe})
}

// Decode reads one status extension package: *TelemetryPackage,
// *TelemetryBundle, *StatusQuery, *StatusReport or *TelemetryControl. Other types give
// ErrNotStatus; wrong key types, unknown forms, over-long target lists and
// frames or bundles that are not base64 (or not a bundle) give
// ErrBadPackage.
func Decode(raw []byte) (protocol.Package, error) {
	h, err := protocol.ParseHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPackage, err)
	}
	bad := func(err error) error { return fmt.Errorf("%w: type %d: %w", ErrBadPackage, h.Type, err) }
	switch h.Type {
	case TypeTelemetry:
		var w wireTelemetry
		if err := unmarshal(raw, &w); err != nil {
			return nil, bad(err)
		}
		if base64.StdEncoding.DecodedLen(len(w.Frame)) > telemetry.MaxFrameSize+2 {
			return nil, bad(fmt.Errorf("frame of %d base64 characters", len(w.Frame)))
		}
		frame, err := base64.StdEncoding.DecodeString(w.Frame)
		if err != nil {
			return nil, bad(err)
		}
		return &TelemetryPackage{From: w.From, Dest: w.Dest, Frame: frame}, nil
	case TypeTelemetryBundle:
		var w wireBundle
		if err := unmarshal(raw, &w); err != nil {
			return nil, bad(err)
		}
		if base64.StdEncoding.DecodedLen(len(w.Frames)) > telemetry.MaxBundleSize+2 {
			return nil, bad(fmt.Errorf("bundle of %d base64 characters", len(w.Frames)))
		}
		b, err := base64.StdEncoding.DecodeString(w.Frames)
		if err != nil {
			return nil, bad(err)
		}
		entries, err := telemetry.ParseBundle(b)
		if err != nil {
			return nil, bad(err)
		}
		return &TelemetryBundle{From: w.From, Dest: w.Dest, Entries: entries}, nil
	case TypeStatusQuery:
		var w wireQuery
		if err := unmarshal(raw, &w); err != nil {
			return nil, bad(err)
		}
		if len(w.Targets) > maxQueryTargets {
			return nil, bad(fmt.Errorf("%d targets, limit %d", len(w.Targets), maxQueryTargets))
		}
		switch w.Form {
		case "":
			w.Form = FormFull
		case FormFull, FormEnhanced:
		default:
			return nil, bad(fmt.Errorf("unknown form %q", w.Form))
		}
		if w.Spread < 0 || w.Spread > int64(time.Hour/time.Millisecond) {
			return nil, bad(fmt.Errorf("spread %d ms out of range", w.Spread))
		}
		if len(w.Targets) == 0 {
			w.Targets = nil // "all"
		}
		return &StatusQuery{From: w.From, Dest: w.Dest, ID: w.ID, Targets: w.Targets, Form: w.Form,
			Spread: time.Duration(w.Spread) * time.Millisecond}, nil
	case TypeStatusReport:
		var w wireReport
		if err := unmarshal(raw, &w); err != nil {
			return nil, bad(err)
		}
		return &StatusReport{From: w.From, Dest: w.Dest, QueryID: w.QueryID, Metrics: w.Metrics}, nil
	case TypeTelemetryControl:
		var w wireControl
		if err := unmarshal(raw, &w); err != nil {
			return nil, bad(err)
		}
		return &TelemetryControl{From: w.From, Dest: w.Dest, Keyframe: w.Keyframe}, nil
	}
	return nil, fmt.Errorf("%w: type %d", ErrNotStatus, h.Type)
}

func unmarshal(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	return d.Decode(v)
}

// IsStatusType reports whether packages of type t are status traffic: the
// extension range and the stock status packages (202 StatusPackage, 204
// MetricsPackage, 604 EnhancedStatusPackage, 605 HealthCheckPackage).
// A simulator uses it to count status bytes on every link a package
// crosses.
func IsStatusType(t int) bool {
	switch t {
	case protocol.TypeStatus, protocol.TypeMetrics, protocol.TypeEnhancedStatus, protocol.TypeHealthCheck:
		return true
	}
	return t >= firstExtensionType && t <= lastExtensionType
}
