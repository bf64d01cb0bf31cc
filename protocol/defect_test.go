package protocol

import (
	"strings"
	"testing"
)

// Decode reads wrong types and missing fields as the C++ library does, and
// says which field it had to coerce, so a receiver can count the package
// as invalid while still handling it like a stock node.
func TestDecodeCheckedReportsDefects(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		kind  DefectKind
		field string
	}{
		{`{"type":8,"dest":0,"from":952,"msg":"hello"}`, DefectNone, ""},
		{`{"type":4,"dest":1,"from":952,"msg":{"type":0}}`, DefectNone, ""},
		{`{"type":4,"dest":1,"from":952,"msg":{"type":2,"t0":1,"t1":2,"t2":3}}`, DefectNone, ""},
		{`{"nodeId":2,"subs":[{"nodeId":7,"root":true}],"type":5,"dest":1,"from":2}`, DefectNone, ""},
		{`{"type":4,"dest":1,"from":952,"msg":"bad"}`, DefectWrongType, "msg"},
		{`{"type":"nine","dest":1,"from":952}`, DefectWrongType, "type"},
		{`{"type":"9","dest":1,"from":952,"msg":"x"}`, DefectWrongType, "type"},
		{`{"dest":1,"from":952}`, DefectMissing, "type"},
		{`{"type":4,"dest":1,"from":952,"msg":{"type":"x"}}`, DefectWrongType, "type"}, // msg.type
		{`{"from":952,"type":200,"routing":2,"sensor":1}`, DefectNone, ""},             // broadcasts need no dest
		{`{"type":4,"dest":1,"from":952}`, DefectMissing, "msg"},
		{`{"type":4,"dest":1,"from":952,"msg":{"type":2,"t0":"a"}}`, DefectWrongType, "t0"},
		{`{"type":9,"dest":"1","from":952,"msg":"x"}`, DefectWrongType, "dest"},
		{`{"type":9,"from":952,"msg":"x"}`, DefectMissing, "dest"},
		{`{"type":9,"dest":1,"from":952,"msg":123}`, DefectWrongType, "msg"},
		{`{"type":9,"dest":1,"from":952.5,"msg":"x"}`, DefectWrongType, "from"},
		{`{"type":9,"dest":1,"from":952,"routing":"2","msg":"x"}`, DefectWrongType, "routing"},
		{`{"nodeId":"2","from":2,"dest":1,"type":5}`, DefectWrongType, "nodeId"},
		{`{"nodeId":2,"subs":[{"nodeId":7,"root":1}],"type":5,"dest":1,"from":2}`, DefectWrongType, "root"},
		{`{"type":99,"dest":1,"from":"x"}`, DefectWrongType, "from"},
		{`{"nodeId":2,"subs":[1],"type":5,"dest":1,"from":2}`, DefectWrongType, ""},
		{`{"nodeId":2,"subs":"x","type":5,"dest":1,"from":2}`, DefectWrongType, "subs"},
	} {
		p, bdef, err := DecodeChecked([]byte(tc.msg))
		if err != nil || p == nil {
			t.Errorf("%s: %v", tc.msg, err)
			continue
		}
		_, hdef, err := ParseHeaderChecked([]byte(tc.msg))
		if err != nil {
			t.Errorf("%s: ParseHeaderChecked: %v", tc.msg, err)
		}
		// A receiver checks the header, then the body (mesh.Node does).
		def := hdef
		if def.Kind == DefectNone {
			def = bdef
		}
		if def.Kind != tc.kind || def.Field != tc.field {
			t.Errorf("%s: defect %+v, want %v %q", tc.msg, def, tc.kind, tc.field)
		}
		// The package itself is what Decode gives: coercion still applies.
		q, _ := Decode([]byte(tc.msg))
		if string(Encode(p)) != string(Encode(q)) {
			t.Errorf("%s: DecodeChecked %s, Decode %s", tc.msg, Encode(p), Encode(q))
		}
		inMsg := strings.Contains(tc.msg, `"msg":{`)
		if (tc.field == "type" || tc.field == "dest" || tc.field == "from" || tc.field == "routing") && !inMsg && hdef != def {
			t.Errorf("%s: header defect %+v, want %+v", tc.msg, hdef, def)
		}
	}
}

// Real nodes never send a package that needs coercion.
func TestCapturesHaveNoDefects(t *testing.T) {
	msgs, files := captureMessages(t)
	for i, m := range msgs {
		_, def, err := DecodeChecked([]byte(m))
		if err != nil || def.Kind != DefectNone {
			t.Errorf("%s: %s: defect %+v, err %v", files[i], m, def, err)
		}
		if _, hdef, _ := ParseHeaderChecked([]byte(m)); hdef.Kind != DefectNone {
			t.Errorf("%s: %s: header defect %+v", files[i], m, hdef)
		}
	}
	if len(msgs) < 700 {
		t.Fatalf("only %d captured messages", len(msgs))
	}
}

// Checking costs no allocation on a well-formed package.
func TestDecodeCheckedAllocs(t *testing.T) {
	msg := []byte(`{"type":4,"dest":1,"from":952,"msg":{"type":2,"t0":1,"t1":2,"t2":3}}`)
	base := testing.AllocsPerRun(100, func() { _, _ = Decode(msg) })
	checked := testing.AllocsPerRun(100, func() { _, _, _ = DecodeChecked(msg) })
	if checked > base {
		t.Errorf("DecodeChecked allocates %.0f, Decode %.0f", checked, base)
	}
}
