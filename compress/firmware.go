package compress

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// FirmwareLike returns size bytes that compress like an ESP32 application image, for
// benchmarks that need realistic firmware without shipping a real one. The same size and
// seed always give the same bytes.
//
// Real ESP32 images compress to 55–63% of their size with gzip over the whole image (see
// DESIGN.md, "Performance model"); this generator is tuned so that zlib level 9 lands near
// 60% (the tests hold it to 55–65% across sizes and seeds). It lays out the image the way
// esptool does, and fills each part with data of the kind found there:
//
//   - a 24-byte image header and 8-byte segment headers with ESP32 load addresses;
//   - code (.iram0.text and .flash.text, ~74%): Xtensa-like 2- and 3-byte instructions.
//     Each image draws a vocabulary of common instructions, used with a Zipf-skewed
//     frequency (register moves, stack loads and stores, small-immediate adds), mixed with
//     instructions whose operands are fresh (branch offsets, call targets, literal-pool
//     loads), function prologues and epilogues, literal pools of 32-bit addresses, and
//     re-use of earlier basic blocks (inlined helpers, macro expansions);
//   - read-only data (~20%): NUL-terminated log and format strings built from a per-image
//     word list, pointer tables, small-integer tables, 0xFF-filled arrays, and small
//     incompressible blocks (certificates, keys, pre-compressed assets; ~3% of the image);
//   - initialised data (~3%): small integers, pointers and zero runs;
//   - a zero padding segment (~3%), as esptool aligns the flash-mapped code;
//   - the trailing checksum byte and SHA-256 digest.
//
// The knobs (vocabulary share and skew, block re-use, the rodata mix) were tuned by
// measurement: code alone compresses to about 67%, rodata to 50%, data to 25%. The mix is
// stationary, so the ratio hardly drifts with size: 59.6–64.5% over 12 seeds each at
// 64 KiB, 256 KiB, 1 MiB and 4 MiB (the highest at 64 KiB, where fixed costs weigh more).
// Images under 4 KiB are the start of a 4 KiB one.
func FirmwareLike(size int, seed uint64) []byte {
	if size <= 0 {
		return []byte{}
	}
	want := size
	size = max(size, 4096) // tiny images are the start of a small one
	g := &fwGen{rng: newRNG(seed)}
	g.out = make([]byte, 0, size+4096)
	g.vocabulary()

	// Image header: magic, segment count, SPI mode/size/frequency, entry point, extended
	// header (WP pin, drive settings, chip ID, revision, hash appended).
	g.out = append(g.out, 0xE9, 6, 0x02, 0x20)
	g.u32(0x40080000 + uint32(g.rng.IntN(0x4000))&^3)
	g.out = append(g.out, 0xEE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)

	type segment struct {
		addr uint32
		frac float64
		fill func(n int)
	}
	segs := []segment{
		{0x3F400020, 0.20, g.rodata},
		{0x3FFB0000, 0.03, g.data},
		{0x40080000, 0.10, g.code},
		{0x400D0020, 0.64, g.code},
	}
	body := size - 24 - 33
	for i, s := range segs {
		if i == 2 {
			// Padding segment so the flash-mapped code starts on a 64 KiB MMU page.
			g.segment(0x3FFB8000, func() { g.zeros(int(0.03 * float64(body))) })
		}
		n := int(s.frac * float64(body))
		if i == len(segs)-1 {
			n = size - 33 - len(g.out) - 8 // the rest
		}
		g.segment(s.addr, func() { s.fill(n) })
	}
	out := g.out[:min(len(g.out), size-33)]
	// Checksum byte and SHA-256 of the image: random as far as a compressor can tell.
	for len(out) < size {
		out = append(out, byte(g.rng.Uint32()))
	}
	return out[:want]
}

type fwGen struct {
	rng   *rand.Rand
	out   []byte
	insns [][]byte // per-image vocabulary of common instructions
	zipf  *rand.Zipf
	words []string
	wzipf *rand.Zipf
}

func (g *fwGen) u32(v uint32) { g.out = binary.LittleEndian.AppendUint32(g.out, v) }

// segment writes an 8-byte segment header and the bytes fill appends, patching the length.
func (g *fwGen) segment(addr uint32, fill func()) {
	at := len(g.out)
	g.u32(addr)
	g.u32(0)
	fill()
	for (len(g.out)-at)%4 != 0 {
		g.out = append(g.out, 0)
	}
	binary.LittleEndian.PutUint32(g.out[at+4:], uint32(len(g.out)-at-8))
}

func (g *fwGen) zeros(n int) { g.out = append(g.out, make([]byte, max(n, 0))...) }

// reg draws an Xtensa address register: a1 (stack) and a2–a10 dominate real code.
func (g *fwGen) reg() byte {
	if g.rng.IntN(4) == 0 {
		return 1
	}
	return byte(2 + min(g.rng.ExpFloat64()*3, 13))
}

// insn returns one random Xtensa-shaped instruction with fresh operands.
func (g *fwGen) insn() []byte {
	r, s, t := g.reg(), g.reg(), g.reg()
	switch k := g.rng.IntN(10); {
	case k < 4: // narrow: mov.n, add.n, l32i.n, s32i.n, addi.n
		op0 := byte(8 + g.rng.IntN(6))
		return []byte{t<<4 | op0, r<<4 | s}
	case k < 6: // RRR ALU (op0 0)
		return []byte{t << 4, r<<4 | s, byte(g.rng.IntN(16))<<4 | byte(g.rng.IntN(4))}
	case k < 8: // load/store with an 8-bit offset
		off := byte(min(g.rng.ExpFloat64()*6, 255))
		return []byte{t<<4 | 2, byte(g.rng.IntN(8))<<4 | s, off}
	default: // branch with an 8-bit offset
		return []byte{t<<4 | 6 | byte(g.rng.IntN(2)), r<<4 | s, byte(g.rng.Uint32())}
	}
}

func (g *fwGen) vocabulary() {
	g.insns = make([][]byte, 600)
	for i := range g.insns {
		g.insns[i] = g.insn()
	}
	g.zipf = rand.NewZipf(g.rng, 1.1, 4, uint64(len(g.insns)-1))

	const letters = "etaoinshrdlucmfwypvbgkqjxz_"
	g.words = make([]string, 1500)
	for i := range g.words {
		n := 2 + g.rng.IntN(9)
		w := make([]byte, n)
		for j := range w {
			w[j] = letters[min(int(g.rng.ExpFloat64()*7), len(letters)-1)]
		}
		g.words[i] = string(w)
	}
	g.wzipf = rand.NewZipf(g.rng, 1.1, 2, uint64(len(g.words)-1))
}

// code appends about n bytes of functions.
func (g *fwGen) code(n int) {
	if n <= 0 {
		return
	}
	end := len(g.out) + n
	for len(g.out) < end {
		// Literal pool: addresses of strings, data and functions.
		for range g.rng.IntN(6) {
			g.u32(g.addr())
		}
		g.out = append(g.out, 0x36, byte(0x21+0x20*g.rng.IntN(4)), 0) // entry a1, N
		blocks := 1 + int(g.rng.ExpFloat64()*4)
		for range blocks {
			g.block()
		}
		g.out = append(g.out, 0x1D, 0xF0) // retw.n
		for len(g.out)%4 != 0 {
			g.out = append(g.out, 0)
		}
	}
	g.out = g.out[:end]
}

// block appends a basic block: usually new, sometimes a copy of an earlier one.
func (g *fwGen) block() {
	if len(g.out) > 4096 && g.rng.IntN(5) == 0 {
		n := 8 + g.rng.IntN(40)
		from := len(g.out) - n - g.rng.IntN(min(len(g.out)-n, 30000))
		g.out = append(g.out, g.out[from:from+n]...)
		return
	}
	for range 2 + int(g.rng.ExpFloat64()*6) {
		switch k := g.rng.IntN(100); {
		case k < 55:
			g.out = append(g.out, g.insns[g.zipf.Uint64()]...)
		case k < 67: // l32r from the literal pool
			g.out = append(g.out, g.reg()<<4|1, byte(g.rng.Uint32()), 0xFF)
		case k < 76: // call8 to a nearby function
			off := g.rng.IntN(1 << 14)
			g.out = append(g.out, byte(off<<6)|0x25, byte(off>>2), byte(off>>10))
		default:
			g.out = append(g.out, g.insn()...)
		}
	}
}

// addr returns a plausible pointer into one of the image's memory regions.
func (g *fwGen) addr() uint32 {
	bases := [...]uint32{0x3F400000, 0x3FFB0000, 0x40080000, 0x400D0000}
	return bases[g.rng.IntN(len(bases))] + uint32(g.rng.IntN(0x40000))&^3
}

// rodata appends about n bytes of read-only data.
func (g *fwGen) rodata(n int) {
	if n <= 0 {
		return
	}
	end := len(g.out) + n
	for len(g.out) < end {
		switch k := g.rng.IntN(100); {
		case k < 60:
			g.str()
		case k < 70: // pointer table
			for range 4 + g.rng.IntN(20) {
				g.u32(g.addr())
			}
		case k < 86: // table of small integers
			w := 1 << g.rng.IntN(3)
			for range 8 + g.rng.IntN(64) {
				v := uint32(min(g.rng.ExpFloat64()*20, math.MaxUint16))
				g.out = binary.LittleEndian.AppendUint32(g.out, v)[:len(g.out)+w]
			}
		case k < 98: // array initialised to -1
			g.out = append(g.out, fill(0xFF, 16+g.rng.IntN(200))...)
		default: // certificate, key or compressed asset
			for range 64 + g.rng.IntN(1024) {
				g.out = append(g.out, byte(g.rng.Uint32()))
			}
		}
	}
	g.out = g.out[:end]
}

// str appends a NUL-terminated log or format string.
func (g *fwGen) str() {
	prefixes := [...]string{"E (%u) ", "W (%u) ", "I (%u) ", "D (%u) ", "", "", "%s: ", "[%s] "}
	g.out = append(g.out, prefixes[g.rng.IntN(len(prefixes))]...)
	for i := range 2 + g.rng.IntN(8) {
		if i > 0 {
			g.out = append(g.out, ' ')
		}
		if g.rng.IntN(8) == 0 {
			fmts := [...]string{"%d", "%s", "%u", "0x%08x", "%p", "=%d,"}
			g.out = append(g.out, fmts[g.rng.IntN(len(fmts))]...)
			continue
		}
		g.out = append(g.out, g.words[g.wzipf.Uint64()]...)
	}
	if g.rng.IntN(3) == 0 {
		g.out = append(g.out, '\n')
	}
	g.out = append(g.out, 0)
	for len(g.out)%4 != 0 {
		g.out = append(g.out, 0)
	}
}

// data appends about n bytes of initialised data.
func (g *fwGen) data(n int) {
	if n <= 0 {
		return
	}
	end := len(g.out) + n
	for len(g.out) < end {
		switch g.rng.IntN(3) {
		case 0:
			g.u32(g.addr())
		case 1:
			g.u32(uint32(min(g.rng.ExpFloat64()*100, math.MaxUint32)))
		default:
			g.zeros(4 * (1 + g.rng.IntN(8)))
		}
	}
	g.out = g.out[:end]
}

func fill(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x45535033322d696d)) } // "ESP32-im"
