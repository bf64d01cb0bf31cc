package history

import (
	"encoding/binary"
	"errors"
)

// A chunk is one node's raw samples of one minute, one row of the samples
// table: far fewer rows and b-tree updates than a row per sample, and a
// fraction of the bytes. Its data is one or more segments (a minute
// written in parts, by Sync or a late sample, is the concatenation of
// its parts): a uvarint count, then per sample its second in the minute
// (one byte), a uvarint bit mask of the metrics it knows, and per known
// metric the zigzag varint of the difference to that metric's previous
// known value in the segment (0 before the first).

// rawSample is a sample inside its minute.
type rawSample struct {
	off   uint8 // seconds after the minute's start
	known uint16
	v     [numMetrics]int64
}

func knownMask(known [numMetrics]bool) uint16 {
	var m uint16
	for i, k := range known {
		if k {
			m |= 1 << i
		}
	}
	return m
}

// appendSegment appends xs as one segment.
func appendSegment(dst []byte, xs []rawSample) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(xs)))
	var prev [numMetrics]int64
	for i := range xs {
		x := &xs[i]
		dst = append(dst, x.off)
		dst = binary.AppendUvarint(dst, uint64(x.known))
		for j := range numMetrics {
			if x.known&(1<<j) == 0 {
				continue
			}
			dst = binary.AppendVarint(dst, x.v[j]-prev[j])
			prev[j] = x.v[j]
		}
	}
	return dst
}

var errBadChunk = errors.New("malformed sample chunk")

// decodeChunk calls fn for every sample of data in order.
func decodeChunk(data []byte, fn func(x *rawSample)) error {
	var x rawSample
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > 1<<16 {
			return errBadChunk
		}
		data = data[k:]
		var prev [numMetrics]int64
		for range n {
			if len(data) < 2 {
				return errBadChunk
			}
			x.off = data[0]
			mask, k := binary.Uvarint(data[1:])
			if k <= 0 || mask >= 1<<numMetrics {
				return errBadChunk
			}
			data = data[1+k:]
			x.known = uint16(mask)
			for j := range numMetrics {
				if x.known&(1<<j) == 0 {
					x.v[j] = 0
					continue
				}
				d, k := binary.Varint(data)
				if k <= 0 {
					return errBadChunk
				}
				data = data[k:]
				prev[j] += d
				x.v[j] = prev[j]
			}
			fn(&x)
		}
	}
	return nil
}
