// Package heatshrink implements the heatshrink LZSS stream format (atomicobject/heatshrink,
// reference version 0.4.1) as used on small embedded targets such as the ESP8266 and ESP32.
//
// # Format
//
// A stream is a sequence of bits, most significant bit of each byte first, with no header
// and no end marker. Each item starts with a tag bit:
//
//   - 1: a literal; the next 8 bits are the byte.
//   - 0: a back-reference; the next Window bits hold offset-1 and the next Lookahead bits
//     hold length-1. The bytes are copied from offset bytes back in the output.
//
// The decoder's window starts filled with zero bytes, so a back-reference may reach before
// the start of the stream and yields zeros (the reference encoder emits such references for
// inputs that start with zeros). The last byte is padded with zero bits. Window and
// Lookahead are not stored in the stream: both sides must agree on them (Params).
//
// # Why hand-written
//
// No maintained Go module for heatshrink is available on the Go module proxy: the known
// ports (github.com/currantlabs/goheatshrink and a few single-function ports) are not
// served by the proxy, are unmaintained, and do not report malformed input as errors. The
// format is small, and this package needs properties the C library does not give either:
// a strict end-of-stream check (truncation is reported, not silently accepted), bounded
// memory for hostile input, and an encoder whose output is byte-identical to the
// reference tool (same greedy match choice, same treatment of the zero-filled initial
// window), which the tests check against vectors made with the reference tool.
package heatshrink
