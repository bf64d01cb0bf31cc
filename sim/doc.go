// Package sim runs many painlessMesh nodes in one process, deterministically:
// the simulation driver of the sans-IO mesh.Node (DESIGN.md, "The simulated
// link model").
//
// A Network holds nodes, the links between them, a virtual clock and an
// agenda of events (message deliveries, node deadlines, scheduled faults).
// The clock jumps from one event to the next; ties are broken by the order
// events were scheduled, and every random choice comes from one PCG source
// seeded by Config.Seed, so the same seed and the same calls give the same
// run, bit for bit (Network.TraceDigest fingerprints it). The wall clock is
// never read, except to report how long a scenario took.
//
// The link model is per node, because a node has one radio: its transmit
// budget is shared by all its connections (messages are sent one after
// another, by mesh.Priority, never interrupting the one on air), it has a
// receive budget and a bounded queue, and each connection adds latency,
// jitter and loss, and may flap. Presets: ESP8266 (fitted to measurements),
// ESP32, Congested and Ideal; every field can be overridden per run, per
// node (NodeSpec.Radio) and per link (Network.SetLink).
//
// Faults: Cut, Partition/Heal, Crash (peers see the connections close),
// CrashSilent (peers find out by their own timeouts), Restart (a fresh
// state machine from the node's spec; its Storage survives), and link
// flaps. Stations dial their lost connections again after Config.Redial.
//
// RunScenario is the standard experiment behind the meshfleet sim command.
package sim
