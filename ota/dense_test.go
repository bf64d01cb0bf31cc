package ota

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDenseRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := [][]byte{nil, {0}, {0xff}, {0, 0}, {0xff, 0xff, 0xff}, all, bytes.Repeat([]byte{0}, 1000), bytes.Repeat([]byte{0xff}, 1000)}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, b)
	}
	for _, c := range cases {
		s := Dense.EncodeToString(c)
		if len(s) > Dense.EncodedLen(len(c)) {
			t.Fatalf("encoded %d bytes to %d chars, bound %d", len(c), len(s), Dense.EncodedLen(len(c)))
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
				t.Fatalf("unsafe byte %q in encoding", s[i])
			}
		}
		// It must stand in a JSON string as is (ArduinoJson escapes only
		// '"', '\\' and control characters).
		var back string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &back); err != nil || back != s {
			t.Fatalf("JSON string %q reads back as %q, %v", s, back, err)
		}
		got, err := Dense.DecodeString(s)
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("round trip of %x: got %x, %v", c, got, err)
		}
	}
}

func TestDenseIsDenserThanBase64(t *testing.T) {
	b := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	d, s := len(Dense.EncodeToString(b)), base64.StdEncoding.EncodedLen(len(b))
	if ratio := float64(d) / float64(len(b)); ratio > 1.24 || d >= s {
		t.Fatalf("dense %d chars (%.3f per byte), base64 %d", d, ratio, s)
	}
}

func TestDenseRejectsForeignBytes(t *testing.T) {
	for _, s := range []string{`ab"c`, `a\b`, "a b", "ab\x00", "é"} {
		if _, err := Dense.DecodeString(s); !errors.Is(err, ErrDense) {
			t.Errorf("%q: err %v, want ErrDense", s, err)
		}
	}
}

func FuzzDense(f *testing.F) {
	f.Add([]byte("hello"), "")
	f.Add([]byte{0, 255, 1}, "ABC~-")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		got, err := Dense.DecodeString(Dense.EncodeToString(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("round trip %x: %x %v", b, got, err)
		}
		if out, err := Dense.DecodeString(s); err == nil && strings.ContainsAny(s, "\"\\ ") {
			t.Fatalf("accepted %q as %x", s, out)
		}
	})
}

func TestRanges(t *testing.T) {
	idx := []int{0, 1, 2, 3, 7, 9, 10, 11, 12, 40}
	s := FormatRanges(idx)
	if s != "0-3,7,9-12,40" {
		t.Fatalf("FormatRanges = %q", s)
	}
	got, err := ParseRanges(s, 41, 100)
	if err != nil || len(got) != len(idx) {
		t.Fatalf("ParseRanges = %v, %v", got, err)
	}
	for i := range idx {
		if got[i] != idx[i] {
			t.Fatalf("ParseRanges = %v", got)
		}
	}
	for _, bad := range []string{"0-4000000000", "5-3", "-1", "a", "41", "0,,1", "1-"} {
		if _, err := ParseRanges(bad, 41, 100); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRanges(%q) err %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := ParseRanges("0-40", 41, 10); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRanges over max: %v", err)
	}
}

func TestBitmap(t *testing.T) {
	b := NewBitmap(130)
	for _, i := range []int{0, 63, 64, 129} {
		if !b.Set(i) || b.Set(i) {
			t.Fatalf("Set(%d) twice", i)
		}
	}
	if b.Count() != 4 || b.Has(1) || !b.Has(129) || b.Has(130) || b.Set(-1) {
		t.Fatalf("bitmap state wrong: count %d", b.Count())
	}
	if m := b.Missing(60, 70, 0); len(m) != 8 || m[0] != 60 || m[3] != 65 {
		t.Fatalf("Missing = %v", m)
	}
	if b.NextMissing(129) != -1 || b.NextMissing(63) != 65 {
		t.Fatalf("NextMissing wrong")
	}
}

func FuzzDecodePackages(f *testing.F) {
	f.Add([]byte(`{"from":1,"routing":2,"type":720,"id":"c","md5":"efa6506336b817b6ac4387222da6b384","role":"r","hardware":"h","size":10,"mode":"broadcast","method":"none","tsize":10,"tmd5":"efa6506336b817b6ac4387222da6b384","cs":4,"n":3,"enc":"b91"}`))
	f.Add([]byte(`{"from":1,"dest":2,"routing":1,"type":721,"id":"c","parts":"0-3,9"}`))
	f.Add([]byte(`{"from":1,"routing":2,"type":722,"id":"c","i":3,"d":"AB"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if o, err := DecodeOffer(raw); err == nil {
			if o.Chunks <= 0 || o.ChunkSize <= 0 || o.ChunkSize > MaxChunkSize {
				t.Fatalf("accepted offer %+v", o)
			}
		}
		if n, err := DecodeNeed(raw); err == nil {
			_, _ = ParseRanges(n.Parts, 1000, 1000)
		}
		if c, err := DecodeChunk(raw); err == nil && c.Index < 0 {
			t.Fatalf("negative index accepted")
		}
		_, _ = DecodeReport(raw)
		_, _ = DecodeEnd(raw)
	})
}
