package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A bundle carries the frames of several nodes in one package: a relay
// that aggregates its subtree's telemetry sends one bundle where its
// children sent one package each, so the collector's radio pays one
// package envelope (about 70 bytes of JSON) per bundle instead of per
// frame. Each frame is carried byte for byte as its node encoded it, so a
// relay needs no per-node state and the collector decodes a bundled frame
// exactly as it would the same frame alone.
//
// Bundle layout (version 1):
//
//	0     version (1)
//	then one entry per frame, to the end:
//	0-3   node id (u32 LE, non-zero)
//	4     waited: time the frame has already been held by relays, in
//	      units of 10 ms (u8, saturating at 255)
//	5     frame length n (headerSize..MaxFrameSize)
//	6-    the frame, n bytes
const (
	BundleVersion = 1
	// MaxBundleSize bounds a bundle's bytes (before base64): about 25
	// typical frames, a package of about 1.4 KB.
	MaxBundleSize = 1024
	// WaitUnit is the resolution of an entry's waited time.
	WaitUnit = 10 * time.Millisecond
	// maxWait is the largest waited time an entry can state.
	maxWait = 255 * WaitUnit

	bundleEntryHeader = 6
)

// ErrBundle is wrapped by every error of ParseBundle.
var ErrBundle = errors.New("telemetry: malformed bundle")

// BundleEntry is one node's frame in a bundle.
type BundleEntry struct {
	Node   uint32
	Waited time.Duration // held by relays so far, a multiple of WaitUnit
	Frame  []byte
}

// EntrySize is the number of bundle bytes an entry with a frame of n
// bytes takes.
func EntrySize(n int) int { return bundleEntryHeader + n }

// AppendBundleHeader starts a bundle.
func AppendBundleHeader(dst []byte) []byte { return append(dst, BundleVersion) }

// AppendBundleEntry appends one entry; waited is rounded down to WaitUnit
// and saturates at 2.55 s. The frame must be 9..64 bytes (a frame the
// Encoder wrote, or one ParseHeader accepts).
func AppendBundleEntry(dst []byte, e BundleEntry) []byte {
	w := min(max(e.Waited, 0), maxWait) / WaitUnit
	dst = binary.LittleEndian.AppendUint32(dst, e.Node)
	dst = append(dst, byte(w), byte(len(e.Frame)))
	return append(dst, e.Frame...)
}

// ParseBundle splits a bundle into its entries. The frames alias b. Only
// the framing and each frame's header are checked here: the bodies are
// decoded, with their node's state, by a Decoder.
func ParseBundle(b []byte) ([]BundleEntry, error) {
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBundle, len(b), MaxBundleSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBundle)
	}
	if b[0] != BundleVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBundle, b[0])
	}
	var out []BundleEntry
	for off := 1; off < len(b); {
		if len(b)-off < bundleEntryHeader {
			return nil, fmt.Errorf("%w: entry header truncated at byte %d", ErrBundle, off)
		}
		node := binary.LittleEndian.Uint32(b[off:])
		waited := time.Duration(b[off+4]) * WaitUnit
		n := int(b[off+5])
		off += bundleEntryHeader
		if node == 0 {
			return nil, fmt.Errorf("%w: entry at byte %d for node 0", ErrBundle, off-bundleEntryHeader)
		}
		if n < headerSize || n > MaxFrameSize {
			return nil, fmt.Errorf("%w: frame length %d at byte %d", ErrBundle, n, off)
		}
		if len(b)-off < n {
			return nil, fmt.Errorf("%w: frame of %d bytes at byte %d truncated", ErrBundle, n, off)
		}
		frame := b[off : off+n : off+n]
		if _, err := ParseHeader(frame); err != nil {
			return nil, fmt.Errorf("%w: frame at byte %d: %w", ErrBundle, off, err)
		}
		out = append(out, BundleEntry{Node: node, Waited: waited, Frame: frame})
		off += n
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no entries", ErrBundle)
	}
	return out, nil
}

// Urgent reports whether a frame should reach the collector with little
// delay: a keyframe (it restarts a stream: the first frame, an answer to
// the collector's request or after a lost frame) or a frame sent early
// because of a change (the priority flag). Other frames are regular
// heartbeats, which a relay may hold longer to bundle more of them.
func Urgent(frame []byte) bool {
	h, err := ParseHeader(frame)
	return err == nil && (h.Keyframe || h.Priority)
}
