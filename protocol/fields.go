package protocol

// fields reads the members of one object with the conversions the C++
// package classes use. Method names say which C++ read they mirror:
//
//	u32/u16/u8/i8/i32/f64/f32/str  implicit conversion or as<T>()
//	                               (out of range: 0; string "12": 12)
//	intOr                          `obj[k] | int(def)`: def unless an int32
//	                               integer; callers truncate to the field
//	                               width like the C++ assignment does
//	floatOr, boolOr                `obj[k] | 0.0`, `obj[k] | false`
//	strIf                          read only if the value is a string
type fields struct {
	d   *doc
	obj int
}

func (f fields) m(k string) int       { return f.d.member(f.obj, k) }
func (f fields) u32(k string) uint32  { return f.d.asU32(f.m(k)) }
func (f fields) u16(k string) uint16  { return f.d.asU16(f.m(k)) }
func (f fields) u8(k string) uint8    { return f.d.asU8(f.m(k)) }
func (f fields) i8(k string) int8     { return f.d.asI8(f.m(k)) }
func (f fields) i32(k string) int32   { return f.d.asI32(f.m(k)) }
func (f fields) f64(k string) float64 { return f.d.asFloat(f.m(k)) }
func (f fields) f32(k string) float32 { return float32(f.d.asFloat(f.m(k))) }
func (f fields) str(k string) string  { return f.d.asString(f.m(k)) }
func (f fields) intOr(k string, def int64) int64 {
	return f.d.intOr(f.m(k), def)
}
func (f fields) floatOr(k string, def float64) float64 { return f.d.floatOr(f.m(k), def) }
func (f fields) boolOr(k string, def bool) bool        { return f.d.boolOr(f.m(k), def) }
func (f fields) strIf(k string, def string) string     { return f.d.stringOr(f.m(k), def) }

// boolIfBool mirrors `if (obj[k].is<bool>()) v = obj[k]`.
func (f fields) boolIfBool(k string, cur bool) bool { return f.d.boolOr(f.m(k), cur) }

// object returns the member k if it is an object (is<JsonObject>()).
func (f fields) object(k string) (fields, bool) {
	i := f.m(k)
	if f.d.kindOf(i) != kindObject {
		return fields{d: f.d, obj: -1}, false
	}
	return fields{d: f.d, obj: i}, true
}

// elements returns the indexes of the elements of array member k; a
// missing or non-array member has none (a null JsonArray).
func (f fields) elements(k string) []int {
	i := f.m(k)
	if f.d.kindOf(i) != kindArray {
		return nil
	}
	var out []int
	f.d.children(i, func(c int) { out = append(out, c) })
	return out
}

// at returns the fields of element i, or an empty object when it is not
// an object (ArduinoJson's JsonObject conversion of a non-object is null,
// and every read from it gives the default).
func (f fields) at(i int) fields {
	if f.d.kindOf(i) != kindObject {
		return fields{d: f.d, obj: -1}
	}
	return fields{d: f.d, obj: i}
}

// orMember is ArduinoJson's `obj[a] | obj[b]`: a unless it is null or
// missing, then b.
func (f fields) orMember(a, b string) int {
	if i := f.m(a); i >= 0 && f.d.nodes[i].kind != kindNull {
		return i
	}
	return f.m(b)
}

// firstKeyIs reports whether the object's first member is called k.
func (f fields) firstKeyIs(k string) bool {
	if f.obj < 0 || f.d.nodes[f.obj].skip == int32(f.obj+1) {
		return false
	}
	return f.d.key(f.obj+1) == k
}
