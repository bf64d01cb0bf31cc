package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const (
	conformanceDir = "../testdata/conformance"
	capturesDir    = "../testdata/painlessmesh"
)

// readJSONL calls fn for every non-empty line of path.
func readJSONL(t testing.TB, path string, fn func(line []byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			fn(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// compactJSON removes insignificant whitespace, keeping key order and the
// exact text of every number and string: the expected side of a vector in
// the form the encoder must produce.
func compactJSON(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("vector is not JSON: %v", err)
	}
	return b.Bytes()
}

// classType maps the C++ class names of packages.jsonl to the Go type
// Decode must produce.
var classType = map[string]reflect.Type{
	"SensorPackage":         reflect.TypeFor[*Sensor](),
	"CommandPackage":        reflect.TypeFor[*Command](),
	"StatusPackage":         reflect.TypeFor[*Status](),
	"EnhancedStatusPackage": reflect.TypeFor[*EnhancedStatus](),
	"MetricsPackage":        reflect.TypeFor[*Metrics](),
	"HealthCheckPackage":    reflect.TypeFor[*HealthCheck](),
	"MeshNodeListPackage":   reflect.TypeFor[*MeshNodeList](),
	"MeshTopologyPackage":   reflect.TypeFor[*MeshTopology](),
	"MeshAlertPackage":      reflect.TypeFor[*MeshAlert](),
	"MeshBridgePackage":     reflect.TypeFor[*MeshBridge](),
	"BridgeStatusPackage":   reflect.TypeFor[*BridgeStatus](),
	"BridgeElectionPackage": reflect.TypeFor[*BridgeElection](),
	"BridgeTakeoverPackage": reflect.TypeFor[*BridgeTakeover](),
	"NTPTimeSyncPackage":    reflect.TypeFor[*NTPTimeSync](),
	"Announce":              reflect.TypeFor[*Announce](),
	"DataRequest":           reflect.TypeFor[*DataRequest](),
	"Data":                  reflect.TypeFor[*Data](),
	"NodeSyncRequest":       reflect.TypeFor[*NodeSync](),
	"NodeSyncReply":         reflect.TypeFor[*NodeSync](),
	"TimeSync":              reflect.TypeFor[*TimeSync](),
	"Single":                reflect.TypeFor[*Single](),
	"Broadcast":             reflect.TypeFor[*Broadcast](),
}

// TestConformancePackages runs every vector of packages.jsonl: `in` went
// through the C++ class of that type and came out as `out`; Decode+Encode
// must give `out` byte for byte (same keys, order, number text, escaping).
func TestConformancePackages(t *testing.T) {
	n := 0
	readJSONL(t, filepath.Join(conformanceDir, "packages.jsonl"), func(line []byte) {
		n++
		var v struct {
			Class string
			In    json.RawMessage
			Out   json.RawMessage
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("vector %d: %v", n, err)
		}
		want := compactJSON(t, v.Out)
		p, err := Decode(v.In)
		if err != nil {
			t.Errorf("vector %d (%s): Decode(%s): %v", n, v.Class, v.In, err)
			return
		}
		if wt, ok := classType[v.Class]; !ok {
			t.Errorf("vector %d: unknown class %q", n, v.Class)
		} else if reflect.TypeOf(p) != wt {
			t.Errorf("vector %d (%s): decoded as %T, want %v", n, v.Class, p, wt)
		}
		if got := Encode(p); !bytes.Equal(got, want) {
			t.Errorf("vector %d (%s)\n  in: %s\n got: %s\nwant: %s", n, v.Class, v.In, got, want)
		}
	})
	if n != 204 {
		t.Errorf("read %d vectors, want 204", n)
	}
}

func TestConformanceBase64(t *testing.T) {
	n := 0
	readJSONL(t, filepath.Join(conformanceDir, "base64_decode.jsonl"), func(line []byte) {
		n++
		var v struct {
			In     string
			OutHex string `json:"out_hex"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(DecodeBase64Lenient(v.In)); got != v.OutHex {
			t.Errorf("DecodeBase64Lenient(%q) = %s, want %s", v.In, got, v.OutHex)
		}
	})
	if n != 100 {
		t.Errorf("read %d vectors, want 100", n)
	}
}

// captureMessages returns every message of the proxy captures, in order,
// with the file it came from.
func captureMessages(t testing.TB) (msgs []string, files []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(capturesDir, "*.jsonl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no captures in %s: %v", capturesDir, err)
	}
	for _, p := range paths {
		readJSONL(t, p, func(line []byte) {
			var rec struct {
				Dir string
				Msg *string
			}
			if json.Unmarshal(line, &rec) == nil && rec.Dir != "" && rec.Msg != nil {
				msgs = append(msgs, *rec.Msg)
				files = append(files, filepath.Base(p))
			}
		})
	}
	return msgs, files
}

// TestCapturesRoundTrip decodes every message real nodes sent to a typed
// package and checks that encoding it gives the original bytes.
func TestCapturesRoundTrip(t *testing.T) {
	msgs, files := captureMessages(t)
	byType := map[int]int{}
	for i, m := range msgs {
		p, err := Decode([]byte(m))
		if err != nil {
			t.Errorf("%s: Decode(%s): %v", files[i], m, err)
			continue
		}
		if _, raw := p.(*Raw); raw {
			t.Errorf("%s: type %d decoded as Raw: %s", files[i], p.PackageType(), m)
			continue
		}
		byType[p.PackageType()]++
		if got := string(Encode(p)); got != m {
			t.Errorf("%s: re-encoding differs\n got: %s\nwant: %s", files[i], got, m)
		}
		h, err := ParseHeader([]byte(m))
		if err != nil {
			t.Errorf("%s: ParseHeader: %v", files[i], err)
		} else if h.Type != p.PackageType() {
			t.Errorf("%s: ParseHeader type %d, Decode type %d", files[i], h.Type, p.PackageType())
		}
	}
	// The scenarios cover node sync, time sync, single, broadcast and OTA.
	for _, typ := range []int{TypeTimeSync, TypeNodeSyncRequest, TypeNodeSyncReply, TypeBroadcast, TypeSingle, TypeOTAAnnounce, TypeOTADataRequest, TypeOTAData} {
		if byType[typ] == 0 {
			t.Errorf("no type %d message in the captures", typ)
		}
	}
	t.Logf("%d messages, by type %v", len(msgs), byType)
}

// TestCaptureOTARebuildsFirmware decodes the Data packages of the unicast
// OTA capture and checks that the chunks, in part order, are the image.
func TestCaptureOTARebuildsFirmware(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(capturesDir, "c_firmware.bin"))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[uint32][]byte{}
	var noPart uint32
	readJSONL(t, filepath.Join(capturesDir, "c_ota_unicast.jsonl"), func(line []byte) {
		var rec struct{ Msg string }
		if json.Unmarshal(line, &rec) != nil || rec.Msg == "" {
			return
		}
		p, err := Decode([]byte(rec.Msg))
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := p.(*Data); ok {
			parts[d.PartNo] = d.Bytes()
			noPart = d.NoPart
		}
	})
	if noPart == 0 || len(parts) != int(noPart) {
		t.Fatalf("got %d parts, announce says %d", len(parts), noPart)
	}
	var got []byte
	for i := uint32(0); i < noPart; i++ {
		got = append(got, parts[i]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rebuilt image: %d bytes, differs from c_firmware.bin (%d bytes)", len(got), len(want))
	}
}
