package protocol

// decodeType decodes the top-level object of d as package type typ, or
// returns nil for types this package does not know.
func (d *doc) decodeType(typ int) Package {
	switch typ {
	case TypeTimeDelay, TypeTimeSync:
		return d.timeSync(typ)
	case TypeNodeSyncRequest, TypeNodeSyncReply:
		return d.nodeSync(typ)
	case TypeBroadcast:
		dest, from, msg := d.message()
		return &Broadcast{Dest: dest, From: from, Msg: msg}
	case TypeSingle:
		dest, from, msg := d.message()
		return &Single{Dest: dest, From: from, Msg: msg}
	}
	return nil
}
