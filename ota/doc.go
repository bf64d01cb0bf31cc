// Package ota distributes firmware over a painlessMesh mesh: a Distributor
// plugin that serves stock receivers exactly as the C++ library does and
// runs faster modes for Go receivers, and a Receiver plugin that stages
// chunks in an A/B slot store, verifies, switches, and confirms or rolls
// back.
//
// Both are sans-IO mesh.Plugin state machines: they never read the clock,
// start goroutines or touch sockets; the node steps them with the current
// time. The wire extensions (types 720–725) are specified in PROTOCOL.md
// next to this file.
//
// Modes, as seen by Go receivers (stock receivers always get the stock
// protocol, PROTOCOL.md §8 of the shared reference):
//
//   - stock: Announce, one DataRequest outstanding, base64 Data (with the
//     transfer compressed when the campaign compresses: the requests carry
//     the stock "compressed" flag, which a stock receiver never sets);
//   - pipelined: a window of chunk requests per receiver, dense payloads;
//   - broadcast: the distributor pushes every chunk once over the whole
//     mesh at the rate the busiest radio sustains; receivers repair gaps
//     from their parent (hop by hop), falling back to the distributor.
//
// Trust: with a public key a Receiver installs only images whose Offer
// carries a manifest signed with it (firmware.Manifest) for the node's
// role and hardware, with the image's SHA-256 and a security counter at
// least the store's (or a signed downgrade); it takes chunks only from the
// distributor of its transfer or its parent towards it, and backs off
// from a transfer that keeps failing verification.
//
// A Campaign is a distribution with state (Pause, Resume, Abort,
// Snapshot). The OTA benchmark (scenario.Bench) measures every mode on one
// simulated mesh.
package ota
