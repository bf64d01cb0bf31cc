package capture

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadAll: reading any input never panics and never returns an
// oversized message; records that were read survive a write and re-read
// unchanged, and Inspect accepts them. Seeds are in testdata/fuzz.
func FuzzReadAll(f *testing.F) {
	f.Add([]byte(`{"t": 0.5, "conn": 1, "dir": "client->server", "msg": "{\"type\":4}"}` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, _ := ReadAll(bytes.NewReader(in))
		for _, r := range recs {
			if len(r.Msg) > MaxMessageSize {
				t.Fatalf("message of %d bytes", len(r.Msg))
			}
		}
		Inspect(recs)
		var buf bytes.Buffer
		w := NewWriter(&buf)
		var want []Record
		for _, r := range recs {
			if !utf8.ValidString(r.Dir) || !utf8.ValidString(r.Event) {
				continue // the writer must replace invalid UTF-8 outside msg
			}
			if err := w.Write(r); err != nil {
				if strings.Contains(err.Error(), "not a finite number") {
					continue
				}
				t.Fatal(err)
			}
			want = append(want, r)
		}
		got, err := ReadAll(&buf)
		if err != nil {
			t.Fatalf("re-read: %v\n%s", err, buf.Bytes())
		}
		if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("re-read %d records, wrote %d\n got %q\nwant %q", len(got), len(want), got, want)
		}
	})
}
