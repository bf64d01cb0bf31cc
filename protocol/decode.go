package protocol

import "fmt"

// ParseHeader reads what a router needs from one message: type, routing,
// dest and from, following the C++ Variant (docs/protocol.md §5.1, Q-8):
//
//   - Type is "type" converted like ArduinoJson's as<int>() (0 if missing);
//   - Routing is "routing" when it is an integer, else derived from Type
//     (3, 9 single; 8 broadcast; 4, 5, 6 neighbour; anything else error);
//   - Dest and From are the keys' values when they are integers in uint32
//     range, else 0.
//
// The whole message is checked for JSON syntax (so relays never forward a
// message the C++ parser would drop) but nested values are not stored.
// An error is returned for invalid JSON, nesting deeper than MaxNesting and
// top-level values that are not objects.
func ParseHeader(msg []byte) (Header, error) {
	d := getDoc()
	defer putDoc(d)
	return d.parseHeader(msg)
}

func (d *doc) parseHeader(msg []byte) (Header, error) {
	if err := d.parse(msg, true); err != nil {
		return Header{}, fmt.Errorf("protocol: parse header: %w", err)
	}
	if d.nodes[0].kind != kindObject {
		return Header{}, fmt.Errorf("protocol: parse header: %w", ErrNotObject)
	}
	return d.header(), nil
}

// header reads the header of the top-level object in one pass over its
// members (the last of duplicate keys wins).
func (d *doc) header() Header {
	typ, routing, dest, from := -1, -1, -1, -1
	end := int(d.nodes[0].skip)
	for i := 1; i < end; i = int(d.nodes[i].skip) {
		n := &d.nodes[i]
		k := d.src[n.keyStart:n.keyEnd]
		if n.keyEsc {
			k = unescape(nil, k)
		}
		switch string(k) {
		case "type":
			typ = i
		case "routing":
			routing = i
		case "dest":
			dest = i
		case "from":
			from = i
		}
	}
	var h Header
	if typ < 0 {
		d.required(0, "type")
	}
	h.Type = int(d.asI32(typ))
	if d.isInt(routing, -1<<31, 1<<31-1) {
		h.Routing = Routing(d.asI32(routing))
	} else {
		d.optional(routing)
		h.Routing = DefaultRouting(h.Type)
	}
	if d.isU32(dest) {
		h.Dest = d.asU32(dest)
	} else if dest >= 0 {
		d.wrongType(dest)
	} else if h.Routing == RouteSingle {
		d.required(0, "dest") // broadcasts go without
	}
	if d.isU32(from) {
		h.From = d.asU32(from)
	} else if from >= 0 {
		d.wrongType(from)
	} else {
		d.required(0, "from")
	}
	return h
}

// DefaultRouting is the routing the C++ router derives from a package type
// when the package has no integer "routing" key.
func DefaultRouting(typ int) Routing {
	switch typ {
	case TypeSingle, TypeTimeDelay:
		return RouteSingle
	case TypeBroadcast:
		return RouteBroadcast
	case TypeNodeSyncRequest, TypeNodeSyncReply, TypeTimeSync:
		return RouteNeighbour
	}
	return RouteError
}

// Decode parses one message (without its NUL terminator) into a typed
// package: *NodeSync, *TimeSync, *Single, *Broadcast, the OTA, plugin and
// Alteriom packages of docs/protocol.md §2, or *Raw (holding a copy of msg) for
// any other type. Fields are read as leniently as the C++ library reads
// them (wrong types and out-of-range numbers become 0, missing strings
// "null"); only invalid JSON, nesting deeper than MaxNesting and non-object
// messages are errors (DecodeChecked also says which field it had to
// coerce). Decode does not keep a reference to msg.
func Decode(msg []byte) (Package, error) {
	d := getDoc()
	defer putDoc(d)
	return d.decode(msg)
}

func (d *doc) decode(msg []byte) (Package, error) {
	if err := d.parse(msg, false); err != nil {
		return nil, fmt.Errorf("protocol: decode: %w", err)
	}
	if d.nodes[0].kind != kindObject {
		return nil, fmt.Errorf("protocol: decode: %w", ErrNotObject)
	}
	typ := int(d.asI32(d.required(0, "type")))
	if p := d.decodeType(typ); p != nil {
		return p, nil
	}
	return &Raw{Header: d.header(), JSON: append([]byte(nil), msg...)}, nil
}

// Encode returns the JSON text of p (without NUL terminator).
func Encode(p Package) []byte { return p.AppendJSON(nil) }
