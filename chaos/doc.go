// Package chaos runs fault campaigns: per seed, a random simulated mesh, a
// random OTA campaign and a random schedule of faults, with the update's
// invariants checked on every seed (`meshfleet sim chaos`).
//
// A seed fixes everything: the mesh, the campaign and the fault schedule
// are drawn from it, and the simulation (sim) is deterministic, so a seed
// and the code replay a run bit for bit. A schedule can also be given
// explicitly (Config.Faults), which is how a failing seed is shrunk: the
// same mesh and campaign are run again with subsets of its faults until no
// fault can be left out without the failure going away.
//
// The faults act from outside the nodes, through the simulator (crashes,
// restarts, partitions, link models, radio queues) and through the devices'
// storage (power cuts before a storage operation, a corrupted chunk write).
// Nothing here reaches into the OTA or mesh state machines.
package chaos
