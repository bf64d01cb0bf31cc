// Package status is the mesh status system: what every node reports about
// itself, how the root gathers it, and what the root makes of it.
//
// Two sans-IO plugins run inside mesh.Node (see mesh.Plugin):
//
//   - Reporter, on every node, measures the node (uptime, the node's own
//     traffic counters, latency to the collector by TIME_DELAY, connections,
//     node count, and firmware, memory, radio and OTA state from Providers),
//     streams compact delta-encoded telemetry frames (package 700, codec in
//     status/telemetry) to the collector, at a fixed interval or on change
//     (a value past its ChangeSteps) with an interval that backs off,
//     sends a frame at once when alert bits appear, and answers status
//     queries (701) with a full report (702) or a stock
//     EnhancedStatusPackage (604).
//   - Aggregator, on relays that run it, takes the frames passing through
//     to the collector and the node's own, and sends them on as one
//     bundle (704) per hold, so the root's radio pays one package
//     envelope for many frames; frames are carried byte for byte and held
//     a bounded time, never kept as values.
//   - Collector, on the root, decodes the streams (asking for a keyframe
//     when one was lost), runs queries to one node, a list or all with
//     timeouts, retries and a model cache, and reads the stock status
//     packages 202, 204, 604 and 605, native or wrapped in a type 8/9
//     message. It keeps a Model (per-node state, history, online/offline
//     with deadlines, the real layout, a health score), runs the alert
//     engine of package alert on every sample and online/offline change,
//     and emits NodeUpdated, NodeOnline, AlertEvent and QueryDone events
//     through the node.
//
// The alert rules themselves (thresholds, hysteresis, reboot loops, node
// offline, anomalies, persistent state) live in package alert.
//
// Nothing here reads the clock: every call takes now. The extension
// packages are specified in PROTOCOL.md next to this file.
package status
