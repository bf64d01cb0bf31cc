package ota

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Bitmap is a set of chunk indices 0..n-1.
type Bitmap struct {
	n     int
	count int
	words []uint64
}

// NewBitmap returns an empty set over n chunks.
func NewBitmap(n int) *Bitmap {
	return &Bitmap{n: n, words: make([]uint64, (n+63)/64)}
}

// Len is the number of chunks the set ranges over.
func (b *Bitmap) Len() int { return b.n }

// Count is the number of members.
func (b *Bitmap) Count() int { return b.count }

// Full reports whether every chunk is a member.
func (b *Bitmap) Full() bool { return b.count == b.n }

// Has reports whether i is a member.
func (b *Bitmap) Has(i int) bool {
	if i < 0 || i >= b.n {
		return false
	}
	return b.words[i/64]&(1<<(uint(i)%64)) != 0
}

// Set adds i; it reports whether i was new.
func (b *Bitmap) Set(i int) bool {
	if i < 0 || i >= b.n || b.Has(i) {
		return false
	}
	b.words[i/64] |= 1 << (uint(i) % 64)
	b.count++
	return true
}

// Clear removes i.
func (b *Bitmap) Clear(i int) {
	if b.Has(i) {
		b.words[i/64] &^= 1 << (uint(i) % 64)
		b.count--
	}
}

// NextMissing returns the first non-member ≥ from, or -1.
func (b *Bitmap) NextMissing(from int) int {
	if from < 0 {
		from = 0
	}
	for i := from; i < b.n; {
		w := ^b.words[i/64] >> (uint(i) % 64)
		if w != 0 {
			j := i + bits.TrailingZeros64(w)
			if j < b.n {
				return j
			}
			return -1
		}
		i = (i/64 + 1) * 64
	}
	return -1
}

// Missing lists the non-members in [from, to), at most max of them (max ≤ 0:
// all).
func (b *Bitmap) Missing(from, to, max int) []int {
	if to > b.n {
		to = b.n
	}
	var out []int
	for i := b.NextMissing(from); i >= 0 && i < to; i = b.NextMissing(i + 1) {
		out = append(out, i)
		if max > 0 && len(out) == max {
			break
		}
	}
	return out
}

// FormatRanges writes sorted, distinct indices compactly: "0-3,7,9-12".
func FormatRanges(idx []int) string {
	var sb strings.Builder
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(idx[i]))
		if j > i {
			sb.WriteByte('-')
			sb.WriteString(strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return sb.String()
}

// ParseRanges reads FormatRanges output. Indices must be < n; at most max
// indices are accepted (a hostile "0-4000000000" must not allocate).
func ParseRanges(s string, n, max int) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a >= n {
			return nil, fmt.Errorf("%w: range %q (of %d chunks)", ErrMalformed, part, n)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a || b >= n {
				return nil, fmt.Errorf("%w: range %q (of %d chunks)", ErrMalformed, part, n)
			}
		}
		if len(out)+(b-a+1) > max {
			return nil, fmt.Errorf("%w: more than %d chunks in %q", ErrMalformed, max, s)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}
