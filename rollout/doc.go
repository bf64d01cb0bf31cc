// Package rollout is the progressive-rollout engine: a rollout installs one
// image on a set of nodes in ordered waves, judges each wave from the nodes'
// telemetry against their own pre-update baseline, and stops (and, if asked,
// rolls the updated nodes back) when too many fail.
//
// It is a sans-IO state machine in the manner of etcd's raft: the caller
// feeds it inputs as method calls that carry the current time and observed
// facts (telemetry samples, the mesh topology, per-node OTA outcomes, nodes
// joining and leaving, operator commands), and collects its outputs with
// Ready: actions to carry out (start an OTA of the image on these nodes,
// roll these nodes back to their previous image, cancel the transfers of
// these nodes) and events to publish (every transition). Advance says the
// batch was taken. NextDeadline tells when Tick must be called next. The
// package starts no goroutine, reads no clock and does no IO.
//
// Every state is a plain value that serializes to JSON (Snapshot) and
// restores (Restore): a restarted gateway resumes a rollout where it was,
// and Restore asks again for the transfers that were running.
//
// Manager runs several rollouts at once on disjoint nodes: a rollout whose
// targets overlap an active one waits for it, or supersedes it when its spec
// says so, and the reason is recorded on both.
//
// What it is not: it does not move image bytes (package ota does, and its
// campaigns are what an update action becomes), it does not collect
// telemetry (package status does), and it does not persist anything itself.
// The simulated proof is scenario.BenchRollout (`meshfleet bench rollout`).
package rollout
