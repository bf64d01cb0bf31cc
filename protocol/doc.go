// Package protocol holds the painlessMesh wire types and their codec: every
// package type a stock node sends, the NUL framing, and the lenient readers
// that make our decoding behave like the C++ library's (see docs/protocol.md
// and the conformance vectors under testdata/).
//
// The encoders write keys in the order the C++ addTo() methods write them,
// omit optional keys exactly where the C++ omits them, and never escape HTML,
// so a decoded-then-encoded stock message is byte-identical to the original.
//
// Hot paths (ParseHeader, Decode/AppendJSON of node sync, time sync,
// single, broadcast and OTA data) use a small span-recording parser and
// hand-written appenders: no reflection, no maps, pooled parse state.
//
// # Differences from the C++ library
//
// The codec reproduces what the C++ code does, including its quirks (see
// the conformance tests), except where that would let garbage corrupt
// state or could not be done safely. These differences are deliberate:
//
//   - Syntax is strict JSON. ArduinoJson also accepts single-quoted
//     strings, unquoted keys and data after the top-level value; Decode
//     and ParseHeader reject them (ErrSyntax). No stock node writes them,
//     and bytes after the object in a NUL-delimited frame mean a corrupted
//     or hostile sender.
//   - A top-level value that is not an object is an error (ErrNotObject);
//     the C++ parses it and then drops it as type 0, with the same effect.
//   - Reader limits a message to a configurable size (1 MiB by default)
//     and skips longer ones (ErrTooLarge); the C++ grows its buffer until
//     the heap runs out.
//   - A "\u0000" escape is kept as a NUL character inside the Go string
//     and written back as "\u0000"; on the nodes it may cut a C string
//     short. Raw NUL bytes cannot occur (they end the frame).
//   - OTA noPart and partNo are read as uint32 (size_t is 32 bits on the
//     ESP chips); a 64-bit build of the C++ would keep larger values.
//   - Numbers are parsed with strconv (correctly rounded); ArduinoJson's
//     own parser can differ in the last bits of long decimal fractions,
//     which may show in the 9th printed digit.
//   - BridgeStatus carries Dest and writes it whenever Routing is single,
//     in either key order; the Alteriom class drops it, the library's
//     direct sender writes it (see LibraryForm).
//
// Behaviour kept on purpose although it looks odd: invalid UTF-8 and raw
// control characters inside strings pass through unchanged; the last of
// duplicate keys wins; numbers out of a field's range read as 0, or wrap
// where the C++ reads with `| default` (so a few uint32 fields cannot read
// back values of 2^31 and more that a node writes, on any node).
package protocol
