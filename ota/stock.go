package ota

import (
	"fmt"

	"github.com/meshfleet/meshfleet/protocol"
)

// stockMsg is a stock OTA package (types 10, 11, 12; docs/protocol.md §8.1) in
// one flat shape: Announce keys, plus Dest/PartNo for DataRequest, plus
// Data for Data. The wire codec is protocol's.
type stockMsg struct {
	Type        int
	From        uint32
	Routing     int
	MD5         string
	Hardware    string
	Role        string
	Forced      bool
	NoPart      uint32
	Broadcasted bool
	Compressed  bool
	Dest        uint32
	PartNo      uint32
	Data        string // base64 text
}

func (m *stockMsg) PackageType() int { return m.Type }

func (m *stockMsg) announce() protocol.Announce {
	return protocol.Announce{From: m.From, Routing: protocol.Routing(m.Routing), MD5: m.MD5, Hardware: m.Hardware,
		Role: m.Role, Forced: m.Forced, NoPart: m.NoPart, Broadcasted: m.Broadcasted, Compressed: m.Compressed}
}

// AppendJSON writes the package with protocol's encoders (C++ key order).
func (m *stockMsg) AppendJSON(dst []byte) []byte {
	a := m.announce()
	switch m.Type {
	case protocol.TypeOTAAnnounce:
		return a.AppendJSON(dst)
	case protocol.TypeOTADataRequest:
		r := protocol.DataRequest{Announce: a, Dest: m.Dest, PartNo: m.PartNo}
		return r.AppendJSON(dst)
	default:
		d := protocol.Data{DataRequest: protocol.DataRequest{Announce: a, Dest: m.Dest, PartNo: m.PartNo}, Base64: m.Data}
		return d.AppendJSON(dst)
	}
}

func fromAnnounce(typ int, a *protocol.Announce) *stockMsg {
	return &stockMsg{Type: typ, From: a.From, Routing: int(a.Routing), MD5: a.MD5, Hardware: a.Hardware, Role: a.Role,
		Forced: a.Forced, NoPart: a.NoPart, Broadcasted: a.Broadcasted, Compressed: a.Compressed}
}

// decodeStock reads a stock OTA package as leniently as the C++ receiver.
func decodeStock(raw []byte) (*stockMsg, error) {
	p, err := protocol.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch v := p.(type) {
	case *protocol.Announce:
		return fromAnnounce(protocol.TypeOTAAnnounce, v), nil
	case *protocol.DataRequest:
		m := fromAnnounce(protocol.TypeOTADataRequest, &v.Announce)
		m.Dest, m.PartNo = v.Dest, v.PartNo
		return m, nil
	case *protocol.Data:
		m := fromAnnounce(protocol.TypeOTAData, &v.Announce)
		m.Dest, m.PartNo, m.Data = v.Dest, v.PartNo, v.Base64
		return m, nil
	}
	return nil, fmt.Errorf("%w: type %d is not a stock OTA package", ErrMalformed, p.PackageType())
}
