package protocol

import "encoding/base64"

// EncodeBase64 encodes b as standard padded base64, as the C++ encoder
// does for OTA chunks.
func EncodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// DecodeBase64Lenient decodes s exactly as the C++ library's lenient
// decoder does (pinned by testdata/conformance/base64_decode.jsonl), so
// that a chunk a stock node accepts is accepted here with the same bytes:
//
//   - '+', '-' and '.' are 62; '/', '_' and ',' are 63;
//   - any other character that is not in the alphabet (a stray '=', a
//     space, '*') decodes as 0 and still takes its place;
//   - the output length is (3·len(s)+2)/4 minus the number of '=' at the
//     end (at most two), so unpadded input is fine.
//
// encoding/base64 cannot do this (it rejects what stock accepts), hence the
// hand-written loop.
func DecodeBase64Lenient(s string) []byte {
	n := len(s)
	pad := 0
	for i := n - 1; i >= 0 && pad < 2 && s[i] == '='; i-- {
		pad++
	}
	outLen := (3*n+2)/4 - pad
	if outLen <= 0 {
		return []byte{}
	}
	out := make([]byte, 0, outLen+2)
	for i := 0; i < n; i += 4 {
		var q [4]byte
		for j := 0; j < 4 && i+j < n; j++ {
			q[j] = base64Value(s[i+j])
		}
		out = append(out, q[0]<<2|q[1]>>4, q[1]<<4|q[2]>>2, q[2]<<6|q[3])
	}
	return out[:outLen]
}

func base64Value(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '+' || c == '-' || c == '.':
		return 62
	case c == '/' || c == '_' || c == ',':
		return 63
	}
	return 0
}
