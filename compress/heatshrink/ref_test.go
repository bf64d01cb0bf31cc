package heatshrink

// Deliberately naive models of the format, written straight from the format description
// (bit by bit, brute-force search), used as oracles for the real Reader and Writer.

// refDecode decodes in bit by bit. ok reports whether the stream ended cleanly: after the
// last whole item only fewer than 8 zero bits remain.
func refDecode(in []byte, p Params) (out []byte, ok bool) {
	total := len(in) * 8
	bit := 0
	get := func(n int) (int, bool) {
		if bit+n > total {
			return 0, false
		}
		v := 0
		for range n {
			v = v<<1 | int(in[bit/8]>>(7-bit%8)&1)
			bit++
		}
		return v, true
	}
	out = []byte{}
	for {
		start := bit
		tag, more := get(1)
		if !more {
			return out, true
		}
		if tag == 1 {
			if c, whole := get(8); whole {
				out = append(out, byte(c))
				continue
			}
		} else {
			off, whole1 := get(p.Window)
			cnt, whole2 := get(p.Lookahead)
			if whole1 && whole2 {
				for range cnt + 1 {
					var c byte // before the start of the stream the window holds zeros
					if i := len(out) - (off + 1); i >= 0 {
						c = out[i]
					}
					out = append(out, c)
				}
				continue
			}
		}
		if total-start >= 8 {
			return out, false
		}
		for b := start; b < total; b++ {
			if in[b/8]>>(7-b%8)&1 != 0 {
				return out, false
			}
		}
		return out, true
	}
}

// refEncode is the reference encoder's parse done by brute force: at each position the
// longest match within the window (the nearest on ties) over a zero-filled history,
// emitted only if longer than (1+Window+Lookahead)/8 bytes.
func refEncode(in []byte, p Params) []byte {
	wsize, lsize := 1<<p.Window, 1<<p.Lookahead
	z := append(make([]byte, wsize), in...)
	minMatch := (1+p.Window+p.Lookahead)/8 + 1
	var out []byte
	var cur byte
	nbits := 0
	put := func(v, n int) {
		for i := n - 1; i >= 0; i-- {
			cur = cur<<1 | byte(v>>i&1)
			nbits++
			if nbits == 8 {
				out = append(out, cur)
				cur, nbits = 0, 0
			}
		}
	}
	for pos := wsize; pos < len(z); {
		maxLen := min(lsize, len(z)-pos)
		best, bestOff := 0, 0
		for off := 1; off <= wsize; off++ {
			n := 0
			for n < maxLen && z[pos-off+n] == z[pos+n] {
				n++
			}
			if n > best {
				best, bestOff = n, off
			}
			if best == maxLen {
				break // nothing farther can be strictly longer
			}
		}
		if best >= minMatch {
			put(0, 1)
			put(bestOff-1, p.Window)
			put(best-1, p.Lookahead)
			pos += best
		} else {
			put(1, 1)
			put(int(z[pos]), 8)
			pos++
		}
	}
	if nbits > 0 {
		out = append(out, cur<<(8-nbits))
	}
	return out
}
