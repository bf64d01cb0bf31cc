package protocol

import "strconv"

// --- NodeTree ---------------------------------------------------------------

// Size is the number of nodes in the tree, the top included
// (layout::size).
func (t NodeTree) Size() int { return t.size() }

func (t *NodeTree) size() int {
	n := 1
	for i := range t.Subs {
		n += t.Subs[i].size()
	}
	return n
}

// Contains reports whether id is anywhere in the tree, the top included.
func (t NodeTree) Contains(id uint32) bool { return t.contains(id) }

func (t *NodeTree) contains(id uint32) bool {
	if t.NodeID == id {
		return true
	}
	for i := range t.Subs {
		if t.Subs[i].contains(id) {
			return true
		}
	}
	return false
}

// IsRooted reports whether any node of the tree has the root flag.
func (t NodeTree) IsRooted() bool { return t.isRooted() }

func (t *NodeTree) isRooted() bool {
	if t.Root {
		return true
	}
	for i := range t.Subs {
		if t.Subs[i].isRooted() {
			return true
		}
	}
	return false
}

// Equal compares like the C++ NodeTree::operator==: id, flags and the
// ordered list of subs, recursively. The order of subs matters.
func (t NodeTree) Equal(o NodeTree) bool {
	return t.equal(&o)
}

func (t *NodeTree) equal(o *NodeTree) bool {
	if t.NodeID != o.NodeID || t.Root != o.Root || t.HasTimeAuthority != o.HasTimeAuthority || len(t.Subs) != len(o.Subs) {
		return false
	}
	for i := range t.Subs {
		if !t.Subs[i].equal(&o.Subs[i]) {
			return false
		}
	}
	return true
}

// Without returns a copy of the tree minus the direct sub whose id is id
// and minus any direct sub with id 0 (the C++ excludeRoute): what a node
// sends to neighbour id. The receiver is not modified; the remaining subs
// are shared with it, not deep-copied.
func (t NodeTree) Without(id uint32) NodeTree {
	out := NodeTree{NodeID: t.NodeID, Root: t.Root, HasTimeAuthority: t.HasTimeAuthority}
	for i := range t.Subs {
		if s := t.Subs[i].NodeID; s == id || s == 0 {
			continue
		}
		out.Subs = append(out.Subs, t.Subs[i])
	}
	return out
}

// Clone returns a deep copy of the tree.
func (t NodeTree) Clone() NodeTree { return t.clone() }

func (t *NodeTree) clone() NodeTree {
	out := NodeTree{NodeID: t.NodeID, Root: t.Root, HasTimeAuthority: t.HasTimeAuthority}
	if len(t.Subs) > 0 {
		out.Subs = make([]NodeTree, len(t.Subs))
		for i := range t.Subs {
			out.Subs[i] = t.Subs[i].clone()
		}
	}
	return out
}

// AppendJSON appends the tree in the subConnectionJson format:
// {"nodeId":N,"root":true?,"hasTimeAuthority":true?,"subs":[...]?}.
func (t NodeTree) AppendJSON(dst []byte) []byte { return t.appendJSON(dst) }

func (t *NodeTree) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = t.appendMembers(dst)
	return append(dst, '}')
}

func (t *NodeTree) appendMembers(dst []byte) []byte {
	dst = append(dst, `"nodeId":`...)
	dst = strconv.AppendUint(dst, uint64(t.NodeID), 10)
	if t.Root {
		dst = append(dst, `,"root":true`...)
	}
	if t.HasTimeAuthority {
		dst = append(dst, `,"hasTimeAuthority":true`...)
	}
	if len(t.Subs) > 0 {
		dst = append(dst, `,"subs":[`...)
		for i := range t.Subs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = t.Subs[i].appendJSON(dst)
		}
		dst = append(dst, ']')
	}
	return dst
}

// String returns the subConnectionJson text.
func (t NodeTree) String() string { return string(t.AppendJSON(nil)) }

// nodeTree reads a tree node like the C++ NodeTree(JsonObject): flags only
// if they are booleans, nodeId only if it is a u32 integer (else the
// object's "from"), subs only if an array; a sub that is not an object
// reads as an empty tree with id 0.
func (d *doc) nodeTree(obj int) NodeTree {
	var t NodeTree
	if d.kindOf(obj) != kindObject {
		d.optional(obj)
		return t
	}
	t.Root = d.boolOr(d.member(obj, "root"), false)
	t.HasTimeAuthority = d.boolOr(d.member(obj, "hasTimeAuthority"), false)
	if id := d.member(obj, "nodeId"); d.isU32(id) {
		t.NodeID = d.asU32(id)
	} else {
		d.optional(id)
		t.NodeID = d.asU32(d.member(obj, "from"))
	}
	if subs := d.member(obj, "subs"); d.kindOf(subs) == kindArray {
		n := 0
		d.children(subs, func(int) { n++ })
		if n > 0 {
			t.Subs = make([]NodeTree, 0, n)
			d.children(subs, func(c int) { t.Subs = append(t.Subs, d.nodeTree(c)) })
		}
	} else {
		d.optional(subs)
	}
	return t
}

// --- NodeSync (5, 6) ----------------------------------------------------------

// PackageType implements Package.
func (p *NodeSync) PackageType() int { return p.Type }

// AppendJSON implements Package: nodeId, root?, hasTimeAuthority?, subs?,
// type, dest, from.
func (p *NodeSync) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = p.NodeTree.appendMembers(dst)
	dst = append(dst, `,"type":`...)
	dst = strconv.AppendInt(dst, int64(p.Type), 10)
	dst = append(dst, `,"dest":`...)
	dst = strconv.AppendUint(dst, uint64(p.Dest), 10)
	dst = append(dst, `,"from":`...)
	dst = strconv.AppendUint(dst, uint64(p.From), 10)
	return append(dst, '}')
}

func (d *doc) nodeSync(typ int) *NodeSync {
	p := &NodeSync{NodeTree: d.nodeTree(0), Type: typ}
	p.Dest = d.asU32(d.member(0, "dest"))
	p.From = d.asU32(d.member(0, "from"))
	return p
}

// --- TimeSync (3, 4) ----------------------------------------------------------

// PackageType implements Package.
func (p *TimeSync) PackageType() int { return p.Type }

// AppendJSON implements Package: type, dest, from, msg{type, t0?, t1?, t2?}.
func (p *TimeSync) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(p.Type), 10)
	dst = append(dst, `,"dest":`...)
	dst = strconv.AppendUint(dst, uint64(p.Dest), 10)
	dst = append(dst, `,"from":`...)
	dst = strconv.AppendUint(dst, uint64(p.From), 10)
	dst = append(dst, `,"msg":{"type":`...)
	dst = strconv.AppendInt(dst, int64(p.Msg.Type), 10)
	if p.Msg.Type >= 1 {
		dst = append(dst, `,"t0":`...)
		dst = strconv.AppendUint(dst, uint64(p.Msg.T0), 10)
	}
	if p.Msg.Type >= 2 {
		dst = append(dst, `,"t1":`...)
		dst = strconv.AppendUint(dst, uint64(p.Msg.T1), 10)
		dst = append(dst, `,"t2":`...)
		dst = strconv.AppendUint(dst, uint64(p.Msg.T2), 10)
	}
	return append(dst, `}}`...)
}

func (d *doc) timeSync(typ int) *TimeSync {
	p := &TimeSync{Type: typ}
	p.Dest = d.asU32(d.member(0, "dest"))
	p.From = d.asU32(d.member(0, "from"))
	m := d.required(0, "msg")
	if m >= 0 && d.nodes[m].kind != kindObject {
		d.wrongType(m)
	}
	p.Msg.Type = int(d.asI32(d.required(m, "type")))
	if t := d.member(m, "t0"); d.isU32(t) {
		p.Msg.T0 = d.asU32(t)
	} else {
		d.optional(t)
	}
	if t := d.member(m, "t1"); d.isU32(t) {
		p.Msg.T1 = d.asU32(t)
	} else {
		d.optional(t)
	}
	if t := d.member(m, "t2"); d.isU32(t) {
		p.Msg.T2 = d.asU32(t)
	} else {
		d.optional(t)
	}
	return p
}

// Reply turns a time-sync message into the answer the C++ reply() builds:
// msg.type is incremented, from and dest swapped, and the given times set
// (one time sets t0; two set t1 and t2).
func (p *TimeSync) Reply(times ...uint32) {
	switch len(times) {
	case 1:
		p.Msg.T0 = times[0]
	case 2:
		p.Msg.T1, p.Msg.T2 = times[0], times[1]
	}
	p.Msg.Type++
	p.From, p.Dest = p.Dest, p.From
}

// --- Single (9) and Broadcast (8) ---------------------------------------------

// PackageType implements Package.
func (p *Single) PackageType() int { return TypeSingle }

// AppendJSON implements Package: type, dest, from, msg.
func (p *Single) AppendJSON(dst []byte) []byte {
	return appendMessage(dst, TypeSingle, p.Dest, p.From, p.Msg)
}

// PackageType implements Package.
func (p *Broadcast) PackageType() int { return TypeBroadcast }

// AppendJSON implements Package: type, dest, from, msg.
func (p *Broadcast) AppendJSON(dst []byte) []byte {
	return appendMessage(dst, TypeBroadcast, p.Dest, p.From, p.Msg)
}

func appendMessage(dst []byte, typ int, dest, from uint32, msg string) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(typ), 10)
	dst = append(dst, `,"dest":`...)
	dst = strconv.AppendUint(dst, uint64(dest), 10)
	dst = append(dst, `,"from":`...)
	dst = strconv.AppendUint(dst, uint64(from), 10)
	dst = append(dst, `,"msg":`...)
	dst = appendString(dst, msg)
	return append(dst, '}')
}

// message reads dest, from and msg; a msg that is not a string becomes its
// JSON text and a missing one "null", as as<String>() does.
func (d *doc) message() (dest, from uint32, msg string) {
	return d.asU32(d.member(0, "dest")), d.asU32(d.member(0, "from")), d.asString(d.required(0, "msg"))
}

// --- Raw ------------------------------------------------------------------

// PackageType implements Package.
func (p *Raw) PackageType() int { return p.Type }

// AppendJSON implements Package by appending the original bytes.
func (p *Raw) AppendJSON(dst []byte) []byte { return append(dst, p.JSON...) }
