package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func tree(id uint32, subs ...NodeTree) NodeTree { return NodeTree{NodeID: id, Subs: subs} }

func TestNodeTreeHelpers(t *testing.T) {
	// 1 ─┬─ 2 ── 3
	//    └─ 4 (root)
	root4 := tree(4)
	root4.Root = true
	tr := tree(1, tree(2, tree(3)), root4)

	if got := tr.Size(); got != 4 {
		t.Errorf("Size = %d, want 4", got)
	}
	for _, id := range []uint32{1, 2, 3, 4} {
		if !tr.Contains(id) {
			t.Errorf("Contains(%d) = false", id)
		}
	}
	if tr.Contains(5) || tr.Contains(0) {
		t.Error("Contains reports a node that is not there")
	}
	if !tr.IsRooted() || tree(1, tree(2)).IsRooted() {
		t.Error("IsRooted wrong")
	}
	if got, want := tr.String(), `{"nodeId":1,"subs":[{"nodeId":2,"subs":[{"nodeId":3}]},{"nodeId":4,"root":true}]}`; got != want {
		t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
	}
}

func TestNodeTreeEqualOrderMatters(t *testing.T) {
	a := tree(1, tree(2), tree(3))
	if !a.Equal(tree(1, tree(2), tree(3))) {
		t.Error("equal trees compare unequal")
	}
	// the C++ compares subs element-wise, so a reordering is a change.
	if a.Equal(tree(1, tree(3), tree(2))) {
		t.Error("reordered subs compare equal")
	}
	b := a.Clone()
	b.Subs[1].HasTimeAuthority = true
	if a.Equal(b) {
		t.Error("hasTimeAuthority ignored by Equal")
	}
	if a.Equal(tree(1, tree(2), tree(3, tree(9)))) {
		t.Error("deeper difference ignored")
	}
}

func TestNodeTreeWithout(t *testing.T) {
	tr := tree(1, tree(2, tree(5)), tree(0), tree(3))
	got := tr.Without(2)
	if want := tree(1, tree(3)); !got.Equal(want) {
		t.Errorf("Without(2) = %s, want %s", got, want)
	}
	// Unknown id: only the id-0 subs go.
	if got, want := tr.Without(7), tree(1, tree(2, tree(5)), tree(3)); !got.Equal(want) {
		t.Errorf("Without(7) = %s, want %s", got, want)
	}
	if len(tr.Subs) != 3 {
		t.Error("Without modified its receiver")
	}
}

func TestNodeTreeCloneIsDeep(t *testing.T) {
	tr := tree(1, tree(2, tree(3)))
	c := tr.Clone()
	c.Subs[0].Subs[0].NodeID = 99
	if tr.Subs[0].Subs[0].NodeID != 3 {
		t.Error("Clone shares subs with the original")
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		msg  string
		want Header
	}{
		{`{"type":9,"dest":5,"from":7,"msg":"x"}`, Header{Type: 9, Routing: RouteSingle, Dest: 5, From: 7}},
		{`{"type":3,"dest":5,"from":7,"msg":{"type":1,"t0":1}}`, Header{Type: 3, Routing: RouteSingle, Dest: 5, From: 7}},
		{`{"type":8,"dest":0,"from":3907768579,"msg":"x"}`, Header{Type: 8, Routing: RouteBroadcast, From: 3907768579}},
		{`{"nodeId":1,"subs":[{"nodeId":2,"subs":[]}],"type":5,"dest":0,"from":1}`, Header{Type: 5, Routing: RouteNeighbour, From: 1}},
		{`{"type":4,"dest":1,"from":2,"msg":{"type":0}}`, Header{Type: 4, Routing: RouteNeighbour, Dest: 1, From: 2}},
		// Explicit integer routing wins over the type (plugins, §7).
		{`{"from":1,"dest":2,"routing":1,"type":11}`, Header{Type: 11, Routing: RouteSingle, Dest: 2, From: 1}},
		{`{"type":9,"routing":2,"dest":5,"from":7}`, Header{Type: 9, Routing: RouteBroadcast, Dest: 5, From: 7}},
		// a routing that is not an integer is ignored.
		{`{"from":1,"routing":"2","type":200}`, Header{Type: 200, Routing: RouteError, From: 1}},
		{`{"from":1,"routing":2.0,"type":9}`, Header{Type: 9, Routing: RouteSingle, From: 1}},
		// Unknown routing values are carried as they are.
		{`{"from":1,"routing":5,"type":21}`, Header{Type: 21, Routing: 5, From: 1}},
		// dest/from only as u32 integers (Q-1, §5.1).
		{`{"type":9,"dest":-1,"from":"7"}`, Header{Type: 9, Routing: RouteSingle}},
		{`{"type":9,"dest":4294967296,"from":1.0}`, Header{Type: 9, Routing: RouteSingle}},
		{`{"type":9,"dest":4294967295,"from":0}`, Header{Type: 9, Routing: RouteSingle, Dest: 4294967295}},
		// type as the C++ reads it (as<int>): numeric strings and floats convert.
		{`{"type":"9","dest":1}`, Header{Type: 9, Routing: RouteSingle, Dest: 1}},
		{`{"type":8.7}`, Header{Type: 8, Routing: RouteBroadcast}},
		{`{"type":7}`, Header{Type: 7, Routing: RouteError}},
		{`{}`, Header{Routing: RouteError}},
		// The last of duplicate keys wins, as in ArduinoJson.
		{`{"type":8,"type":9}`, Header{Type: 9, Routing: RouteSingle}},
		// Escaped keys are keys all the same.
		{`{"typ\u0065":9,"dest":3}`, Header{Type: 9, Routing: RouteSingle, Dest: 3}},
	}
	for _, tc := range tests {
		got, err := ParseHeader([]byte(tc.msg))
		if err != nil {
			t.Errorf("ParseHeader(%s): %v", tc.msg, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseHeader(%s) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

// TestBadInput lists the errors users see for messages that cannot be
// decoded. ParseHeader must refuse exactly what Decode refuses.
func TestBadInput(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 256) + "1" + strings.Repeat("}", 256)
	ok := strings.Repeat(`{"a":`, 254) + "1" + strings.Repeat("}", 254)
	tests := []struct {
		msg  string
		is   error
		text string
	}{
		{``, ErrSyntax, "protocol: decode: invalid JSON: empty message"},
		{`   `, ErrSyntax, "protocol: decode: invalid JSON: empty message"},
		{`{"type":8`, ErrSyntax, "protocol: decode: invalid JSON at byte 9: unterminated object"},
		{`{"type":8,}`, ErrSyntax, "protocol: decode: invalid JSON at byte 10: expected a quoted object key"},
		{`{"type" 8}`, ErrSyntax, "protocol: decode: invalid JSON at byte 8: expected ':' after object key"},
		{`{"a":tru}`, ErrSyntax, "protocol: decode: invalid JSON at byte 5: invalid literal"},
		{`{"a":01}`, ErrSyntax, "protocol: decode: invalid JSON at byte 6: expected ',' or '}' in object"},
		{`{"a":1.}`, ErrSyntax, "protocol: decode: invalid JSON at byte 7: invalid number: no digits after '.'"},
		{`{"a":"\q"}`, ErrSyntax, `protocol: decode: invalid JSON at byte 7: invalid escape \q`},
		{`{"a":"\u12"}`, ErrSyntax, `protocol: decode: invalid JSON at byte 10: invalid \u escape`},
		{"{\"a\":\"x\x00\"}", ErrSyntax, "protocol: decode: invalid JSON at byte 7: NUL byte inside string"},
		{`{"a":"x}`, ErrSyntax, "protocol: decode: invalid JSON at byte 8: unterminated string"},
		{`[1,2]`, ErrNotObject, "protocol: decode: message is not a JSON object"},
		{`"hello"`, ErrNotObject, "protocol: decode: message is not a JSON object"},
		{deep, ErrTooDeep, "protocol: decode: JSON nesting too deep: more than 255 levels at byte 1275"},
		// Deliberate differences from ArduinoJson, which accepts these:
		// data after the object (a NUL-framed message never legitimately
		// has any; it means a corrupted or hostile sender), single quotes
		// and unquoted keys (no stock node writes them).
		{`{"type":8}xyz`, ErrSyntax, "protocol: decode: invalid JSON at byte 10: unexpected data after the top-level value"},
		{`{'type':8}`, ErrSyntax, "protocol: decode: invalid JSON at byte 1: expected a quoted object key"},
		{`{type:8}`, ErrSyntax, "protocol: decode: invalid JSON at byte 1: expected a quoted object key"},
	}
	for _, tc := range tests {
		_, err := Decode([]byte(tc.msg))
		if err == nil || !errors.Is(err, tc.is) || err.Error() != tc.text {
			t.Errorf("Decode(%.40q)\n error %v\n  want %q (%v)", tc.msg, err, tc.text, tc.is)
		}
		if _, herr := ParseHeader([]byte(tc.msg)); herr == nil || !errors.Is(herr, tc.is) {
			t.Errorf("ParseHeader(%.40q) error %v, want %v", tc.msg, herr, tc.is)
		}
	}
	if _, err := Decode([]byte(ok)); err != nil {
		t.Errorf("254 levels refused: %v", err)
	}
}

// TestLenientFields covers the C++ conversions on the core packages.
func TestLenientFields(t *testing.T) {
	tests := []struct {
		in   string
		want Package
	}{
		// a missing msg is "null"; a non-string one its JSON text,
		// printed the way ArduinoJson prints it.
		{`{"type":9,"dest":1,"from":2}`, &Single{Dest: 1, From: 2, Msg: "null"}},
		{`{"type":8,"dest":0,"from":2,"msg":{"b" : [1, 2.50, true, null], "c":"\u00fc"}}`, &Broadcast{From: 2, Msg: `{"b":[1,2.5,true,null],"c":"ü"}`}},
		{`{"type":8,"from":2,"msg":{"a":1,"b":2,"a":3}}`, &Broadcast{From: 2, Msg: `{"a":3,"b":2}`}},
		{`{"type":8,"from":2,"msg":1e300}`, &Broadcast{From: 2, Msg: "1e300"}},
		// Strings: escapes decoded, surrogate pairs combined.
		{`{"type":9,"msg":"\"\\\/\b\f\n\r\t\ud83d\ude00"}`, &Single{Msg: "\"\\/\b\f\n\r\t😀"}},
		// nodeId falls back to from when it is not a u32 integer; subs
		// that are not objects are id-0 trees; flags must be booleans.
		{`{"nodeId":-5,"root":1,"subs":[7,{"nodeId":3,"hasTimeAuthority":true}],"type":6,"dest":1,"from":9}`,
			&NodeSync{NodeTree: NodeTree{NodeID: 9, Subs: []NodeTree{{}, {NodeID: 3, HasTimeAuthority: true}}}, Type: 6, Dest: 1, From: 9}},
		// Times are read only as u32 integers; msg.type with as<int>.
		{`{"type":4,"dest":1,"from":2,"msg":{"type":"2","t0":-1,"t1":1.5,"t2":7}}`, &TimeSync{Type: 4, Dest: 1, From: 2, Msg: TimeMsg{Type: 2, T2: 7}}},
		{`{"type":3,"dest":1,"from":2,"msg":"x"}`, &TimeSync{Type: 3, Dest: 1, From: 2}},
	}
	for _, tc := range tests {
		got, err := Decode([]byte(tc.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Decode(%s)\n got %#v\nwant %#v", tc.in, got, tc.want)
		}
	}
}

func TestEncodeStrings(t *testing.T) {
	// ArduinoJson escapes only " \ \b \f \n \r \t and NUL; "/" and
	// non-ASCII stay as they are, other control characters are raw.
	p := &Single{Dest: 1, From: 2, Msg: "a/b <&> ü \x00 \x01 \"\\\b\f\n\r\t"}
	want := "{\"type\":9,\"dest\":1,\"from\":2,\"msg\":\"a/b <&> ü \\u0000 \x01 \\\"\\\\\\b\\f\\n\\r\\t\"}"
	if got := string(Encode(p)); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	back, err := Decode(Encode(p))
	if err != nil || back.(*Single).Msg != p.Msg {
		t.Errorf("round trip: %v %q", err, back)
	}
}

func TestFloatFormat(t *testing.T) {
	// Expected texts follow ArduinoJson's rules, worked out by hand:
	// values a float holds exactly get 6 decimals, others 9; exponent
	// form from 1e7 up and at 1e-5 and below; trailing zeros dropped.
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {45, "45"}, {-1.5, "-1.5"}, {23.5, "23.5"}, {1013.25, "1013.25"},
		{0.1, "0.1"}, {1.0 / 3, "0.333333333"}, {float64(float32(0.1)), "0.1"},
		{9999999, "9999999"}, {1e7, "1e7"}, {2147483648, "2.147484e9"},
		{3907768579, "3.907768579e9"}, {4294967295, "4.294967295e9"},
		{0.00001, "1e-5"}, {0.000123, "0.000123"}, {1.5e-7, "1.5e-7"},
		{1e300, "1e300"}, {99.9999999999, "100"},
	}
	for _, tc := range tests {
		if got := string(appendDouble(nil, tc.v)); got != tc.want {
			t.Errorf("appendDouble(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
	if got := string(appendFloatField(nil, "q", 0.9)); got != `"q":0.9` {
		t.Errorf("float32 0.9 = %s", got)
	}
}

// TestConstructorsRoundTrip encodes every package type built by its
// constructor, decodes it, and expects the same value back.
func TestConstructorsRoundTrip(t *testing.T) {
	sensor := NewSensor(3907768579)
	sensor.Temp, sensor.Humidity, sensor.Pressure, sensor.Battery = 23.5, 45, 1013.25, 85
	status := NewStatus(1)
	status.RespTo, status.RespMsg = 12, "ok"
	status.Sensors.PressureOffset = -0.25
	status.MQTTRetry.BackoffMultiplier = 1.5
	data := NewData(1, 2)
	data.SetBytes([]byte{0, 1, 2, 250})
	data.Forced, data.Compressed, data.NoPart = true, true, 7
	coord := NewBridgeCoordination(5)
	coord.PeerBridges = []uint32{1, 4294967295}
	classic := NewBridgeElection(5)
	classic.LibraryForm = false
	unicastStatus := NewBridgeStatus(5)
	unicastStatus.Routing, unicastStatus.Dest = RouteSingle, 77
	pkgs := []Package{
		&NodeSync{NodeTree: tree(1, tree(2)), Type: TypeNodeSyncRequest, From: 1},
		&TimeSync{Type: TypeTimeSync, Dest: 1, From: 2, Msg: TimeMsg{Type: TimeReply, T0: 1, T1: 2, T2: 3}},
		&Single{Dest: 1, From: 2, Msg: "x"}, &Broadcast{From: 2, Msg: "y"},
		NewAnnounce(1), NewDataRequest(1, 2), data,
		NewPerformance(1), &RemoteLog{SingleBase: single(1, 2), Log: []LogEntry{{1, "a"}, {2, "b"}}},
		sensor, NewCommand(1, 2), status, NewMetrics(1), NewMPPT(1),
		&MeshNodeList{BroadcastBase: bcast(1), Nodes: []MeshNodeInfo{{NodeID: 1, Status: 1, LastSeen: 5, RSSI: -60}}, MeshID: "m", MessageType: 600},
		&MeshTopology{BroadcastBase: bcast(1), Connections: []MeshConnection{{From: 1, To: 2, Quality: 0.9, Latency: 4, Hops: 1}}, MessageType: 601},
		&MeshAlert{BroadcastBase: bcast(1), Alerts: []MeshAlertEntry{{Type: 1, Severity: 2, Msg: "m", NodeID: 3, Value: 1.25, Threshold: 10, AlertID: 4}}, MessageType: 602},
		NewMeshBridge(1), NewEnhancedStatus(1), NewHealthCheck(1),
		NewBridgeStatus(5), unicastStatus, NewBridgeElection(5), classic, NewBridgeTakeover(5), coord,
		NewNTPTimeSync(1), NewGatewayData(1, 2), NewGatewayAck(1, 2),
	}
	seen := map[int]bool{}
	for _, p := range pkgs {
		enc := Encode(p)
		back, err := Decode(enc)
		if err != nil {
			t.Errorf("%T: %v\n%s", p, err, enc)
			continue
		}
		if !reflect.DeepEqual(back, p) {
			t.Errorf("%T round trip\n got %+v\nwant %+v\njson %s", p, back, p, enc)
		}
		if h, _ := ParseHeader(enc); h.Type != p.PackageType() {
			t.Errorf("%T: header type %d", p, h.Type)
		}
		seen[p.PackageType()] = true
	}
	for _, typ := range []int{3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 200, 202, 204, 205, 400, 600, 601, 602, 603, 604, 605, 610, 611, 612, 613, 614, 620, 621} {
		if typ != 3 && typ != 6 && !seen[typ] {
			t.Errorf("type %d not covered", typ)
		}
	}
}

func TestBridgeForms(t *testing.T) {
	// The library's own sender (wifi.hpp) writes "type" first; the class
	// writes the plugin order. Both decode, and each re-encodes as it came.
	lib := `{"type":610,"from":3394043125,"routing":1,"dest":2167907561,"timestamp":123456789,"internetConnected":true,"routerRSSI":-45,"routerChannel":6,"uptime":3600000,"gatewayIP":"192.168.1.1","message_type":610}`
	class := `{"from":3394043125,"routing":2,"type":610,"internetConnected":true,"routerRSSI":-45,"routerChannel":6,"uptime":3600000,"gatewayIP":"192.168.1.1","timestamp":123456789,"message_type":610}`
	coord := `{"type":613,"from":1,"routing":2,"priority":10,"role":"primary","load":30,"timestamp":5,"message_type":613,"peerBridges":[2,3]}`
	for _, msg := range []string{lib, class, coord} {
		p, err := Decode([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(Encode(p)); got != msg {
			t.Errorf("got  %s\nwant %s", got, msg)
		}
	}
	p, _ := Decode([]byte(lib))
	if bs := p.(*BridgeStatus); bs.Dest != 2167907561 || !bs.LibraryForm || bs.RouterRSSI != -45 {
		t.Errorf("%+v", bs)
	}
}

func TestUnwrap(t *testing.T) {
	inner := NewSensor(7)
	inner.Temp = 21.5
	b := &Broadcast{From: 7, Msg: string(Encode(inner))}
	got, ok := Unwrap(b)
	if !ok || !reflect.DeepEqual(got, inner) {
		t.Fatalf("Unwrap = %#v, %v", got, ok)
	}
	// bridge coordination travels wrapped in a broadcast.
	coord := `{"type":613,"from":1,"routing":2,"priority":10,"role":"primary","load":0,"timestamp":5,"message_type":613,"peerBridges":[]}`
	if got, ok := Unwrap(&Broadcast{From: 1, Msg: coord}); !ok || got.PackageType() != TypeBridgeCoordinate {
		t.Errorf("coordination: %v %v", got, ok)
	}
	// Unknown inner types come back as Raw with the inner text.
	if got, ok := Unwrap(&Single{Msg: ` {"type":21,"routing":0,"name":"x"}`}); !ok || got.(*Raw).Type != 21 {
		t.Errorf("raw inner: %v %v", got, ok)
	}
	for _, msg := range []string{"hello", `{"type":"200"}`, `{"notype":1}`, `{"type":200`, `[1]`, ""} {
		if got, ok := Unwrap(&Single{Msg: msg}); ok {
			t.Errorf("Unwrap(%q) = %v, want not a package", msg, got)
		}
	}
	if _, ok := Unwrap(NewSensor(1)); ok {
		t.Error("Unwrap of a non-message package")
	}
}

func TestDecodeUnknownIsRaw(t *testing.T) {
	msg := []byte(`{"from":1,"routing":0,"type":21,"name1":2}`)
	p, err := Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := p.(*Raw)
	if !ok || raw.Type != 21 || raw.Routing != RouteNeighbour || raw.From != 1 || string(raw.JSON) != string(msg) {
		t.Fatalf("%#v", p)
	}
	msg[0] = 'X' // Decode must not keep the caller's buffer
	if raw.JSON[0] != '{' {
		t.Error("Raw shares the input buffer")
	}
}

func TestMeshListLimits(t *testing.T) {
	// uint8_t count = size; if (count > 50) count = 50: 60 entries keep 50,
	// 300 entries wrap to 44 (300 mod 256) before the cap.
	mk := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"from":1,"routing":2,"type":600,"nodes":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"nodeId":1}`)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	for n, want := range map[int]int{3: 3, 60: 50, 300: 44} {
		p, err := Decode([]byte(mk(n)))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.(*MeshNodeList).Nodes); got != want {
			t.Errorf("%d nodes in, %d kept, want %d", n, got, want)
		}
	}
}

func TestTimeSyncReply(t *testing.T) {
	p := &TimeSync{Type: TypeTimeSync, Dest: 1, From: 2, Msg: TimeMsg{Type: TimeSyncRequest}}
	p.Reply(100)
	if p.Msg.Type != TimeRequest || p.Msg.T0 != 100 || p.From != 1 || p.Dest != 2 {
		t.Errorf("%+v", p)
	}
	p.Reply(200, 300)
	if p.Msg.Type != TimeReply || p.Msg.T1 != 200 || p.Msg.T2 != 300 || p.From != 2 {
		t.Errorf("%+v", p)
	}
	if got := string(Encode(p)); got != `{"type":4,"dest":1,"from":2,"msg":{"type":2,"t0":100,"t1":200,"t2":300}}` {
		t.Error(got)
	}
}

func TestBase64(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {1, 2}, {1, 2, 3}, []byte("Hello")} {
		if got := DecodeBase64Lenient(EncodeBase64(b)); string(got) != string(b) {
			t.Errorf("round trip %v: %v", b, got)
		}
	}
	if got := EncodeBase64([]byte("Hello")); got != "SGVsbG8=" {
		t.Error(got)
	}
	if got := DecodeBase64Lenient("="); len(got) != 0 {
		t.Errorf("%v", got)
	}
}

// TestIntOrReadBack pins a C++ quirk we keep: uint32 fields read with
// `obj[k] | 0` accept only int32 values, so a value of 2^31 or more that
// a node writes reads back as 0 on every node, ours included. Decoding
// such a field differently would make our view of a package disagree with
// every stock receiver's.
func TestIntOrReadBack(t *testing.T) {
	s := NewStatus(1)
	s.Display.TimeoutMs = 3_000_000_000
	enc := Encode(s)
	if !strings.Contains(string(enc), `"timeout_ms":3000000000,"timeout_s":3000000`) {
		t.Fatalf("not written as is: %s", enc)
	}
	back, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.(*Status).Display.TimeoutMs; got != 0 {
		t.Errorf("read back %d, want 0 as the C++ reads it", got)
	}
	// A negative int is stored as its uint32 bit pattern (-70 → 4294967226).
	p, _ := Decode([]byte(`{"from":1,"routing":2,"type":611,"freeMemory":-70}`))
	if got := p.(*BridgeElection).FreeMemory; got != 4294967226 {
		t.Errorf("freeMemory -70 read as %d", got)
	}
}

// TestDeliberateDifferences covers the places where we differ from the
// C++ library on purpose (see the package documentation); the syntax
// ones are in TestBadInput, the size limit in TestReaderTooLarge.
func TestDeliberateDifferences(t *testing.T) {
	t.Run("NUL escape kept, not truncated", func(t *testing.T) {
		// On the nodes "\u0000" may cut the C string short; we keep the
		// whole text so nothing after it is silently lost, and write it
		// back escaped so it cannot end the frame.
		msg := `{"type":9,"dest":1,"from":2,"msg":"a\u0000b"}`
		p, err := Decode([]byte(msg))
		if err != nil || p.(*Single).Msg != "a\x00b" {
			t.Fatalf("%#v %v", p, err)
		}
		if got := string(Encode(p)); got != msg {
			t.Errorf("got %s", got)
		}
	})
	t.Run("OTA part counts are 32-bit", func(t *testing.T) {
		// size_t on the ESP chips: a count that does not fit reads as 0,
		// as it does on every node that would act on the package.
		p, err := Decode([]byte(`{"from":1,"routing":1,"type":11,"md5":"m","hardware":"ESP32","role":"r","noPart":4294967296,"broadcasted":false,"dest":2,"partNo":4294967295}`))
		if err != nil {
			t.Fatal(err)
		}
		if r := p.(*DataRequest); r.NoPart != 0 || r.PartNo != 4294967295 {
			t.Errorf("%+v", r)
		}
	})
}
