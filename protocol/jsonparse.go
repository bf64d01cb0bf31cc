package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The decoder does not use encoding/json: the C++ library reads fields with
// ArduinoJson's lenient conversions (a string "12" read as an integer gives
// 12, an out-of-range number gives 0, a non-string read as a string gives its
// JSON text), which need the parsed value's kind and exact text. A small
// parser that records spans into the message gives both without allocating
// per value and without reflection.

// Errors returned by Decode and ParseHeader. Returned errors wrap one of
// these, so callers can test with errors.Is.
var (
	// ErrSyntax: the message is not valid JSON.
	ErrSyntax = errors.New("invalid JSON")
	// ErrNotObject: the message is valid JSON but not an object.
	ErrNotObject = errors.New("message is not a JSON object")
	// ErrTooDeep: the message nests objects and arrays deeper than
	// MaxNesting, the limit the C++ parser applies.
	ErrTooDeep = errors.New("JSON nesting too deep")
)

// MaxNesting is the deepest nesting of objects and arrays a message may
// have; the C++ library parses with ArduinoJson's NestingLimit(255).
const MaxNesting = 255

type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindInt   // negative integer that fits int64
	kindUint  // non-negative integer that fits uint64
	kindFloat // any other number (fraction, exponent or too large)
	kindString
	kindArray
	kindObject
)

// node is one parsed value. Nodes are stored in pre-order: a container's
// first child is the next node, and skip is the index just past its
// subtree, so siblings are found by following skip.
type node struct {
	kind     kind
	esc      bool  // string (value) holds escape sequences
	keyEsc   bool  // member key holds escape sequences
	start    int32 // value span; for strings the text between the quotes
	end      int32
	keyStart int32 // member key span (between the quotes); object members only
	keyEnd   int32
	skip     int32
	val      uint64 // integers: the value (kindInt: two's complement)
}

// doc is a parsed message. It keeps a reference to the input bytes.
type doc struct {
	src   []byte
	nodes []node
	// defect is the first field a read had to coerce (DecodeChecked).
	defect Defect
}

var docPool = sync.Pool{New: func() any { return &doc{nodes: make([]node, 0, 64)} }}

func getDoc() *doc { return docPool.Get().(*doc) }

func putDoc(d *doc) {
	if cap(d.nodes) > 1<<16 {
		return // do not keep huge arenas alive
	}
	d.src = nil
	d.nodes = d.nodes[:0]
	docPool.Put(d)
}

type parser struct {
	src   []byte
	pos   int
	nodes []node
	// shallow: record only the top-level value and its direct members;
	// deeper values are validated but not stored (ParseHeader).
	shallow bool
}

func syntaxErr(pos int, what string) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, pos, what)
}

// parse parses src as one JSON value followed only by whitespace.
func (d *doc) parse(src []byte, shallow bool) error {
	p := parser{src: src, nodes: d.nodes[:0], shallow: shallow}
	d.defect = Defect{}
	p.ws()
	if p.pos >= len(src) {
		d.src, d.nodes = src, p.nodes
		return fmt.Errorf("%w: empty message", ErrSyntax)
	}
	err := p.value(0, true)
	if err == nil {
		p.ws()
		if p.pos < len(src) {
			err = syntaxErr(p.pos, "unexpected data after the top-level value")
		}
	}
	d.src, d.nodes = src, p.nodes
	return err
}

func (p *parser) ws() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) add(n node, record bool) int {
	if !record {
		return -1
	}
	p.nodes = append(p.nodes, n)
	return len(p.nodes) - 1
}

// value parses one value; depth counts enclosing containers.
func (p *parser) value(depth int, record bool) error {
	if p.pos >= len(p.src) {
		return syntaxErr(p.pos, "unexpected end of input")
	}
	start := p.pos
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.object(depth, record)
	case c == '[':
		return p.array(depth, record)
	case c == '"':
		s, e, esc, err := p.str()
		if err != nil {
			return err
		}
		p.add(node{kind: kindString, esc: esc, start: int32(s), end: int32(e), skip: int32(len(p.nodes) + 1)}, record)
		return nil
	case c == 't':
		return p.literal("true", kindTrue, record)
	case c == 'f':
		return p.literal("false", kindFalse, record)
	case c == 'n':
		return p.literal("null", kindNull, record)
	case c == '-' || (c >= '0' && c <= '9'):
		k, v, err := p.number()
		if err != nil {
			return err
		}
		p.add(node{kind: k, start: int32(start), end: int32(p.pos), skip: int32(len(p.nodes) + 1), val: v}, record)
		return nil
	default:
		return syntaxErr(p.pos, fmt.Sprintf("unexpected character %q", c))
	}
}

func (p *parser) literal(word string, k kind, record bool) error {
	if len(p.src)-p.pos < len(word) || string(p.src[p.pos:p.pos+len(word)]) != word {
		return syntaxErr(p.pos, "invalid literal")
	}
	start := p.pos
	p.pos += len(word)
	p.add(node{kind: k, start: int32(start), end: int32(p.pos), skip: int32(len(p.nodes) + 1)}, record)
	return nil
}

func (p *parser) object(depth int, record bool) error {
	if depth >= MaxNesting {
		return fmt.Errorf("%w: more than %d levels at byte %d", ErrTooDeep, MaxNesting, p.pos)
	}
	idx := p.add(node{kind: kindObject, start: int32(p.pos)}, record)
	childRecord := record && !(p.shallow && depth >= 1)
	p.pos++ // '{'
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		p.closeNode(idx)
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.src) || p.src[p.pos] != '"' {
			return syntaxErr(p.pos, "expected a quoted object key")
		}
		ks, ke, kesc, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return syntaxErr(p.pos, "expected ':' after object key")
		}
		p.pos++
		p.ws()
		first := len(p.nodes)
		if err := p.value(depth+1, childRecord); err != nil {
			return err
		}
		if childRecord {
			m := &p.nodes[first]
			m.keyStart, m.keyEnd, m.keyEsc = int32(ks), int32(ke), kesc
		}
		p.ws()
		if p.pos >= len(p.src) {
			return syntaxErr(p.pos, "unterminated object")
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.closeNode(idx)
			return nil
		default:
			return syntaxErr(p.pos, "expected ',' or '}' in object")
		}
	}
}

func (p *parser) array(depth int, record bool) error {
	if depth >= MaxNesting {
		return fmt.Errorf("%w: more than %d levels at byte %d", ErrTooDeep, MaxNesting, p.pos)
	}
	idx := p.add(node{kind: kindArray, start: int32(p.pos)}, record)
	childRecord := record && !(p.shallow && depth >= 1)
	p.pos++ // '['
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == ']' {
		p.pos++
		p.closeNode(idx)
		return nil
	}
	for {
		p.ws()
		if err := p.value(depth+1, childRecord); err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.src) {
			return syntaxErr(p.pos, "unterminated array")
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.closeNode(idx)
			return nil
		default:
			return syntaxErr(p.pos, "expected ',' or ']' in array")
		}
	}
}

func (p *parser) closeNode(idx int) {
	if idx < 0 {
		return
	}
	p.nodes[idx].end = int32(p.pos)
	p.nodes[idx].skip = int32(len(p.nodes))
}

// str scans a string starting at the opening quote and returns the span
// between the quotes. Raw control characters and invalid UTF-8 are accepted
// and kept, as ArduinoJson does; a NUL byte is not (it ends a frame).
func (p *parser) str() (start, end int, esc bool, err error) {
	p.pos++ // opening quote
	start = p.pos
	src := p.src
	i := p.pos
	for {
		// Jump to the next quote, then look for escapes and NULs before
		// it; both searches are vectorised, which matters for the 1.4 KB
		// base64 strings of OTA data.
		q := bytes.IndexByte(src[i:], '"')
		if q < 0 {
			if z := bytes.IndexByte(src[i:], 0); z >= 0 {
				return 0, 0, false, syntaxErr(i+z, "NUL byte inside string")
			}
			return 0, 0, false, syntaxErr(len(src), "unterminated string")
		}
		seg := src[i : i+q]
		b := bytes.IndexByte(seg, '\\')
		if b >= 0 {
			seg = seg[:b]
		}
		if z := bytes.IndexByte(seg, 0); z >= 0 {
			return 0, 0, false, syntaxErr(i+z, "NUL byte inside string")
		}
		if b < 0 {
			p.pos = i + q + 1
			return start, i + q, esc, nil
		}
		esc = true
		i += b + 1 // the escaped character
		if i >= len(src) {
			return 0, 0, false, syntaxErr(i, "unterminated string")
		}
		switch src[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if i+4 >= len(src) {
				return 0, 0, false, syntaxErr(i, "short \\u escape")
			}
			for j := 1; j <= 4; j++ {
				if unhex(src[i+j]) < 0 {
					return 0, 0, false, syntaxErr(i+j, "invalid \\u escape")
				}
			}
			i += 4
		default:
			return 0, 0, false, syntaxErr(i, fmt.Sprintf("invalid escape \\%c", src[i]))
		}
		i++
	}
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// number scans a JSON number and classifies it the way ArduinoJson stores
// it: integers that fit 64 bits stay integers, everything else is a double.
func (p *parser) number() (kind, uint64, error) {
	src := p.src
	i := p.pos
	start := i
	neg := false
	if src[i] == '-' {
		neg = true
		i++
	}
	if i >= len(src) {
		return 0, 0, syntaxErr(i, "invalid number")
	}
	var v uint64 // wraps past 19 digits; such numbers are re-parsed below
	if src[i] == '0' {
		i++
	} else if src[i] >= '1' && src[i] <= '9' {
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			v = v*10 + uint64(src[i]-'0')
			i++
		}
	} else {
		return 0, 0, syntaxErr(i, "invalid number")
	}
	isFloat := false
	if i < len(src) && src[i] == '.' {
		isFloat = true
		i++
		d := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			return 0, 0, syntaxErr(i, "invalid number: no digits after '.'")
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		isFloat = true
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		d := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			return 0, 0, syntaxErr(i, "invalid number: no digits in exponent")
		}
	}
	p.pos = i
	if isFloat {
		return kindFloat, 0, nil
	}
	digits := src[start:i]
	if neg {
		if len(digits) == 2 && digits[1] == '0' {
			return kindUint, 0, nil // -0 is stored as the integer 0
		}
		// Up to 18 digits always fit an int64; longer ones are checked.
		if len(digits) <= 19 {
			return kindInt, uint64(-int64(v)), nil
		}
		if s, ok := parseInt64(digits); ok {
			return kindInt, uint64(s), nil
		}
		return kindFloat, 0, nil
	}
	// Up to 19 digits always fit a uint64; 20 digits may overflow.
	if len(digits) <= 19 {
		return kindUint, v, nil
	}
	if u, ok := parseUint64(digits); ok {
		return kindUint, u, nil
	}
	return kindFloat, 0, nil
}

func parseUint64(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(b) <= 19 { // cannot overflow: skip the per-digit check
		for _, c := range b {
			v = v*10 + uint64(c-'0')
		}
		return v, true
	}
	for _, c := range b {
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func parseInt64(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] != '-' {
		return 0, false
	}
	u, ok := parseUint64(b[1:])
	if !ok || u > 1<<63 {
		return 0, false
	}
	return -int64(u), true
}

// --- lookups -------------------------------------------------------------

// member returns the index of obj's member called name, or -1. With
// duplicate keys the last one wins, as in ArduinoJson (which overwrites the
// earlier value in place).
func (d *doc) member(obj int, name string) int {
	if obj < 0 || d.nodes[obj].kind != kindObject {
		return -1
	}
	found := -1
	end := int(d.nodes[obj].skip)
	for i := obj + 1; i < end; i = int(d.nodes[i].skip) {
		n := &d.nodes[i]
		if !n.keyEsc {
			if string(d.src[n.keyStart:n.keyEnd]) == name {
				found = i
			}
		} else if d.key(i) == name {
			found = i
		}
	}
	return found
}

// key returns the decoded key of member i.
func (d *doc) key(i int) string {
	n := &d.nodes[i]
	raw := d.src[n.keyStart:n.keyEnd]
	if !n.keyEsc {
		return string(raw)
	}
	return string(unescape(nil, raw))
}

// children calls fn for each element or member of container c.
func (d *doc) children(c int, fn func(i int)) {
	if c < 0 {
		return
	}
	end := int(d.nodes[c].skip)
	for i := c + 1; i < end; i = int(d.nodes[i].skip) {
		fn(i)
	}
}

func (d *doc) kindOf(i int) kind {
	if i < 0 {
		return kindNull
	}
	return d.nodes[i].kind
}

// unescape appends the decoded content of a JSON string body to dst.
// \u escapes become UTF-8: surrogate pairs are combined; a lone surrogate
// is kept as its three-byte encoding rather than replaced, so no input
// byte pattern is lost.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+1:])
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if lo := hex4(raw[i+3:]); lo >= 0xDC00 && lo < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				}
			}
			dst = appendCodepoint(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, raw[i])
		}
	}
	return dst
}

func hex4(b []byte) rune {
	return rune(unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3]))
}

func appendCodepoint(dst []byte, r rune) []byte {
	if r >= 0xD800 && r < 0xE000 { // lone surrogate: utf8 would replace it
		return append(dst, byte(0xE0|r>>12), byte(0x80|(r>>6)&0x3F), byte(0x80|r&0x3F))
	}
	return utf8.AppendRune(dst, r)
}

// --- ArduinoJson-style conversions ----------------------------------------

// num returns the numeric value of number node i as ArduinoJson holds it.
func (d *doc) num(i int) (k kind, u uint64, s int64, f float64) {
	n := &d.nodes[i]
	switch n.kind {
	case kindUint:
		return kindUint, n.val, 0, 0
	case kindInt:
		return kindInt, 0, int64(n.val), 0
	case kindFloat:
		f, _ = strconv.ParseFloat(string(d.src[n.start:n.end]), 64)
		return kindFloat, 0, 0, f
	}
	return n.kind, 0, 0, 0
}

// numeric is a number as ArduinoJson stores it; kind is kindUint, kindInt,
// kindFloat, or kindNull when the value is not a number.
type numeric struct {
	kind kind
	u    uint64
	s    int64
	f    float64
}

// numberOf returns node i as a number, converting the way ArduinoJson's
// as<number>() does: booleans are 0/1, strings are parsed as a whole
// (anything that is not a complete number gives nothing).
func (d *doc) numberOf(i int) numeric {
	if i < 0 {
		return numeric{}
	}
	switch n := &d.nodes[i]; n.kind {
	case kindUint, kindInt, kindFloat:
		k, u, s, f := d.num(i)
		return numeric{kind: k, u: u, s: s, f: f}
	case kindTrue:
		return numeric{kind: kindUint, u: 1}
	case kindFalse:
		return numeric{kind: kindUint}
	case kindString:
		raw := d.src[n.start:n.end]
		if n.esc {
			raw = unescape(nil, raw)
		}
		return parseNumberString(raw)
	}
	return numeric{}
}

// parseNumberString parses a string value as ArduinoJson's parseNumber
// does for as<T>() on strings: an optional sign, digits, fraction and
// exponent, and nothing else.
func parseNumberString(b []byte) numeric {
	if len(b) == 0 {
		return numeric{}
	}
	body := b
	if body[0] == '+' {
		body = body[1:]
		if len(body) > 0 && body[0] == '-' {
			return numeric{}
		}
	}
	p := parser{src: body}
	if len(body) == 0 || !(body[0] == '-' || (body[0] >= '0' && body[0] <= '9')) {
		return numeric{}
	}
	k, v, err := p.number()
	if err != nil || p.pos != len(body) {
		return numeric{}
	}
	tmp := doc{src: body, nodes: []node{{kind: k, start: 0, end: int32(len(body)), val: v}}}
	k, u, s, f := tmp.num(0)
	return numeric{kind: k, u: u, s: s, f: f}
}

// asUint converts node i like ArduinoJson's as<uintN>(): the value if it
// fits in [0, max] (floats truncated toward zero), else 0.
func (d *doc) asUint(i int, max uint64) uint64 {
	if i >= 0 && !(d.nodes[i].kind == kindUint && d.nodes[i].val <= max) {
		d.wrongType(i)
	}
	v := d.numberOf(i)
	switch v.kind {
	case kindUint:
		if v.u <= max {
			return v.u
		}
	case kindFloat:
		if v.f >= 0 && v.f <= float64(max) {
			return uint64(v.f)
		}
	}
	return 0
}

// asInt converts node i like ArduinoJson's as<intN>().
func (d *doc) asInt(i int, min, max int64) int64 {
	if i >= 0 && !d.isInt(i, min, max) {
		d.wrongType(i)
	}
	v := d.numberOf(i)
	switch v.kind {
	case kindUint:
		if v.u <= uint64(max) {
			return int64(v.u)
		}
	case kindInt:
		if v.s >= min && v.s <= max {
			return v.s
		}
	case kindFloat:
		if v.f >= float64(min) && v.f <= float64(max) {
			return int64(v.f)
		}
	}
	return 0
}

func (d *doc) asU32(i int) uint32 { return uint32(d.asUint(i, 1<<32-1)) }
func (d *doc) asU16(i int) uint16 { return uint16(d.asUint(i, 1<<16-1)) }
func (d *doc) asU8(i int) uint8   { return uint8(d.asUint(i, 1<<8-1)) }
func (d *doc) asI8(i int) int8    { return int8(d.asInt(i, -128, 127)) }
func (d *doc) asI32(i int) int32  { return int32(d.asInt(i, -1<<31, 1<<31-1)) }

// asFloat converts node i like ArduinoJson's as<double>().
func (d *doc) asFloat(i int) float64 {
	if i >= 0 && !d.isNumber(i) {
		d.wrongType(i)
	}
	v := d.numberOf(i)
	switch v.kind {
	case kindUint:
		return float64(v.u)
	case kindInt:
		return float64(v.s)
	case kindFloat:
		return v.f
	}
	return 0
}

// isU32 reports whether node i is an integer in uint32 range
// (ArduinoJson's is<uint32_t>()).
func (d *doc) isU32(i int) bool {
	return i >= 0 && d.nodes[i].kind == kindUint && d.rawUint(i) <= 1<<32-1
}

func (d *doc) rawUint(i int) uint64 { return d.nodes[i].val }

// isInt reports whether node i is an integer in [min, max]
// (ArduinoJson's is<intN>()).
func (d *doc) isInt(i int, min, max int64) bool {
	if i < 0 {
		return false
	}
	switch d.nodes[i].kind {
	case kindUint:
		u := d.rawUint(i)
		return max >= 0 && u <= uint64(max)
	case kindInt:
		_, _, s, _ := d.num(i)
		return s >= min && s <= max
	}
	return false
}

// intOr is ArduinoJson's `variant | int(def)`: the value if it is an
// integer in int32 range, else def. C++ code then stores the int in a
// narrower field, so callers truncate the result to the field's width.
func (d *doc) intOr(i int, def int64) int64 {
	if d.isInt(i, -1<<31, 1<<31-1) {
		return d.asInt(i, -1<<31, 1<<31-1)
	}
	d.optional(i)
	return def
}

// isNumber reports whether node i is any number (is<float>/is<double>).
func (d *doc) isNumber(i int) bool {
	if i < 0 {
		return false
	}
	switch d.nodes[i].kind {
	case kindUint, kindInt, kindFloat:
		return true
	}
	return false
}

// floatOr is `variant | double(def)`.
func (d *doc) floatOr(i int, def float64) float64 {
	if d.isNumber(i) {
		return d.asFloat(i)
	}
	d.optional(i)
	return def
}

// boolOr is `variant | def` for booleans.
func (d *doc) boolOr(i int, def bool) bool {
	if i >= 0 {
		if k := d.nodes[i].kind; k == kindTrue || k == kindFalse {
			return k == kindTrue
		}
		d.optional(i)
	}
	return def
}

// asString converts node i like ArduinoJson's as<String>(): strings are
// decoded, a missing key or null gives "null", anything else its JSON text
// as ArduinoJson would print it.
func (d *doc) asString(i int) string {
	if i < 0 {
		return "null"
	}
	n := &d.nodes[i]
	if n.kind == kindString {
		raw := d.src[n.start:n.end]
		if !n.esc {
			return string(raw)
		}
		return string(unescape(make([]byte, 0, len(raw)), raw))
	}
	d.wrongType(i)
	return string(d.appendValue(nil, i))
}

// stringOr is `variant | def` for strings: the string if it is one, else def.
func (d *doc) stringOr(i int, def string) string {
	if i >= 0 && d.nodes[i].kind == kindString {
		return d.asString(i)
	}
	d.optional(i)
	return def
}

// appendValue re-serialises node i the way ArduinoJson prints a parsed
// document: compact, numbers in ArduinoJson's format, strings re-escaped,
// duplicate keys collapsed (first position, last value).
func (d *doc) appendValue(dst []byte, i int) []byte {
	n := &d.nodes[i]
	switch n.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindTrue:
		return append(dst, "true"...)
	case kindFalse:
		return append(dst, "false"...)
	case kindUint:
		return strconv.AppendUint(dst, d.rawUint(i), 10)
	case kindInt:
		_, _, s, _ := d.num(i)
		return strconv.AppendInt(dst, s, 10)
	case kindFloat:
		_, _, _, f := d.num(i)
		return appendDouble(dst, f)
	case kindString:
		raw := d.src[n.start:n.end]
		if n.esc {
			return appendString(dst, string(unescape(nil, raw)))
		}
		return appendStringBytes(dst, raw)
	case kindArray:
		dst = append(dst, '[')
		first := true
		d.children(i, func(c int) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = d.appendValue(dst, c)
		})
		return append(dst, ']')
	case kindObject:
		dst = append(dst, '{')
		first := true
		d.children(i, func(c int) {
			k := d.key(c)
			if d.firstMember(i, k) != c {
				return // a later duplicate; printed at the first position
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = d.appendValue(dst, d.member(i, k))
		})
		return append(dst, '}')
	}
	return dst
}

func (d *doc) firstMember(obj int, name string) int {
	found := -1
	end := int(d.nodes[obj].skip)
	for c := obj + 1; c < end && found < 0; c = int(d.nodes[c].skip) {
		if d.key(c) == name {
			found = c
		}
	}
	return found
}
