package protocol

import "fmt"

// DefectKind says how a field of a well-formed message was wrong.
type DefectKind uint8

const (
	// DefectNone: every field read had its JSON type.
	DefectNone DefectKind = iota
	// DefectMissing: a field the package type needs was absent.
	DefectMissing
	// DefectWrongType: a field had another JSON type than its package type
	// gives it, or a number out of the field's range.
	DefectWrongType
)

// Defect is the first field Decode had to coerce ArduinoJson-style (a
// string "9" read as 9, a missing dest read as 0) to build its package.
// A stock node processes such a package all the same, so Decode does too;
// the defect lets a receiver count and report it. The zero value means
// the package needed no coercion.
type Defect struct {
	Kind  DefectKind
	Field string // the member's name ("" for an array element)
}

// Error describes the defect as a parse error would.
func (d Defect) Error() string {
	switch d.Kind {
	case DefectMissing:
		return fmt.Sprintf("protocol: field %q missing", d.Field)
	case DefectWrongType:
		return fmt.Sprintf("protocol: field %q has the wrong JSON type or range", d.Field)
	}
	return "protocol: no defect"
}

// DecodeChecked is Decode that also returns the first field it had to
// coerce among "type" and those its package type reads; the routing keys
// of known types are ParseHeaderChecked's to check. The package is the one
// Decode returns.
func DecodeChecked(msg []byte) (Package, Defect, error) {
	d := getDoc()
	defer putDoc(d)
	p, err := d.decode(msg)
	return p, d.defect, err
}

// ParseHeaderChecked is ParseHeader that also returns the first header
// field (type, routing, dest, from) it had to coerce.
func ParseHeaderChecked(msg []byte) (Header, Defect, error) {
	d := getDoc()
	defer putDoc(d)
	h, err := d.parseHeader(msg)
	return h, d.defect, err
}

// wrongType records that node i, which is present, had to be coerced.
// Not inlined: it is the rare path, and the readers that call it stay
// small enough to be inlined themselves.
//
//go:noinline
func (d *doc) wrongType(i int) {
	if d.defect.Kind == DefectNone {
		d.defect = Defect{Kind: DefectWrongType, Field: d.key(i)}
	}
}

// required returns obj's member called name, recording it as missing if
// there is none.
func (d *doc) required(obj int, name string) int {
	i := d.member(obj, name)
	if i < 0 && d.defect.Kind == DefectNone {
		d.defect = Defect{Kind: DefectMissing, Field: name}
	}
	return i
}

// optional records node i, an optional field its reader ignored, as
// coerced unless it is absent or null (both read as absent).
//
//go:noinline
func (d *doc) optional(i int) {
	if i >= 0 && d.nodes[i].kind != kindNull {
		d.wrongType(i)
	}
}
