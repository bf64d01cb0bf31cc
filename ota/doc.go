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
// protocol, docs/protocol.md §8):
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
//
// Structure. The Receiver keeps the lifecycle of a transfer (receiver.go:
// offer or announce, download into the store, verify, switch, trial,
// confirm or roll back, report); how its chunks are fetched is one small
// type per strategy behind the fetcher interface (fetch.go), as raft's
// stepLeader and stepFollower split behaviour by role: stockFetch, the
// stock request loop (fetch_stock.go); windowFetch, pipelined requests
// (fetch_window.go); pushFetch, the broadcast push with hop-by-hop repair
// (fetch_push.go). Answering children's repair asks, paced on the node's
// radio, is childRepairs (repairs.go). The Distributor announces and
// serves campaigns (distributor.go, distributor_serve.go); a broadcast
// campaign's push and its rate control are pushControl
// (distributor_push.go); a stock-turbo campaign's (stock receivers, one
// flood per part, one lowest-first stream that goes back to whoever
// its request counts show stuck) is turboControl
// (distributor_turbo.go).
//
// Persistence is out of the step, as raft treats writes (storework.go):
// the store work (Begin, which opens or resumes the staged download; chunk
// writes; Flush, Finish's decoding and checks, and Switch; the trial's
// Confirm and Rollback; SetOrigin; Boot of the new slot; the chunk reads
// that serve children's repairs) is asked of the driver as a mesh.Work in
// the node's Ready, the driver runs it in order (transport/tcp on a worker
// goroutine, the simulator between steps, after sim.Config.WorkTime of
// virtual time) and answers with mesh.Node.WorkDone. The state advances
// on the answer: verifying until Finish answered, switching until Confirm
// did; meanwhile the receiver leaves the store alone. Chunk writes are
// batched (chunkwrites.go): received chunks wait in a buffer bounded by
// ReceiverConfig.WriteBuffer while the batch before them is written and
// flushed, count as held only once their batch answered (a crash never
// claims a chunk that is not on disk), and a chunk that does not fit is
// dropped and fetched again. Only the store's in-memory reads (Active,
// SecurityCounter, Staged) stay in the step; NewReceiver boots the store
// before the node runs.
package ota
