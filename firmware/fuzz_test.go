package firmware

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeMeta feeds arbitrary bytes to the meta.json decoder: it must
// never panic, and whatever it accepts must be a valid record that survives
// a round trip.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"id":"2c874ae99e58","role":"sensor","hardware":"ESP32","version":"1.0.0","md5":"900150983cd24fb0d6963f7d28e17f72","size":3,"added":"2026-11-22T10:00:00Z"}`))
	f.Add([]byte(`{"id":"../../etc","role":"a_b","hardware":"","version":"\u0000","md5":"x","size":-1}`))
	f.Add([]byte(`{"variants":{"none":{"method":"none","size":1,"md5":""}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"signature":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := decodeMeta(data)
		if err != nil {
			return
		}
		if err := validateImage(img); err != nil {
			t.Fatalf("decodeMeta accepted an invalid record: %v", err)
		}
		again, err := json.Marshal(img)
		if err != nil {
			t.Fatal(err)
		}
		img2, err := decodeMeta(again)
		if err != nil {
			t.Fatalf("round trip failed: %v", err)
		}
		if img2.ID != img.ID || img2.MD5 != img.MD5 || img2.Size != img.Size || len(img2.Variants) != len(img.Variants) {
			t.Fatalf("round trip changed the record: %+v -> %+v", img, img2)
		}
	})
}
