package protocol

// Unwrap decodes the package carried inside a SINGLE (9) or BROADCAST (8)
// message, the "wrapped" encoding Alteriom applications and the library's
// bridge coordination use: if p is a *Single or *Broadcast
// whose msg is a JSON object with an integer "type", Unwrap returns that
// package (a *Raw for types this package does not know) and true.
// Otherwise it returns nil and false.
func Unwrap(p Package) (Package, bool) {
	var msg string
	switch m := p.(type) {
	case *Single:
		msg = m.Msg
	case *Broadcast:
		msg = m.Msg
	default:
		return nil, false
	}
	if !looksLikeObject(msg) {
		return nil, false // cheap rejection of plain text messages
	}
	d := getDoc()
	defer putDoc(d)
	b := []byte(msg)
	if d.parse(b, false) != nil || d.nodes[0].kind != kindObject {
		return nil, false
	}
	t := d.member(0, "type")
	if !d.isInt(t, -1<<31, 1<<31-1) {
		return nil, false
	}
	typ := int(d.asI32(t))
	if inner := d.decodeType(typ); inner != nil {
		return inner, true
	}
	return &Raw{Header: d.header(), JSON: b}, true
}

func looksLikeObject(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}
