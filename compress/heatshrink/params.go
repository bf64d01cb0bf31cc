package heatshrink

import (
	"errors"
	"fmt"
)

// Parameter limits of the reference implementation.
const (
	MinWindow    = 4  // smallest Window (16-byte window)
	MaxWindow    = 15 // largest Window (32 KiB window)
	MinLookahead = 3  // smallest Lookahead (8-byte longest match)
)

// ErrInvalidParams is returned (wrapped) for a Window or Lookahead out of range.
var ErrInvalidParams = errors.New("invalid heatshrink parameters")

// ErrTruncated is returned (wrapped) by Reader when the stream ends inside an item, or when
// the final bits are not the zero padding an encoder writes.
var ErrTruncated = errors.New("heatshrink stream truncated or corrupt")

// Params are the two stream parameters, as base-2 logarithms exactly like the reference
// tool's -w and -l options: the window is 1<<Window bytes and the longest match is
// 1<<Lookahead bytes. A stream must be decoded with the parameters it was encoded with.
type Params struct {
	Window    int // 4..15
	Lookahead int // 3..Window-1
}

// String formats p like the reference tool's options.
func (p Params) String() string { return fmt.Sprintf("-w %d -l %d", p.Window, p.Lookahead) }

// Validate reports whether p is usable, with the same limits as the reference library.
func (p Params) Validate() error {
	if p.Window < MinWindow || p.Window > MaxWindow {
		return fmt.Errorf("heatshrink: window %d bits outside %d..%d: %w",
			p.Window, MinWindow, MaxWindow, ErrInvalidParams)
	}
	if p.Lookahead < MinLookahead || p.Lookahead >= p.Window {
		return fmt.Errorf("heatshrink: lookahead %d bits outside %d..%d (window %d): %w",
			p.Lookahead, MinLookahead, p.Window-1, p.Window, ErrInvalidParams)
	}
	return nil
}

// minMatch is the shortest back-reference worth emitting. It follows the reference
// encoder's break-even rule (a match must be longer than (1+Window+Lookahead)/8 bytes),
// which matters for byte-identical output.
func (p Params) minMatch() int { return (1+p.Window+p.Lookahead)/8 + 1 }
