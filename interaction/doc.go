// Package interaction holds meshfleet's interaction tests: scripts under
// testdata/ drive a few real nodes (mesh.Node with the OTA and status
// plugins) through the simulation driver step by step, and every step
// prints the messages the nodes sent and the events they emitted. The
// printed transcript is compared with the one written in the script, so a
// change of behaviour shows as the exact step whose output diverged.
//
// The package has no code of its own; the environment is in its tests.
// Run them with `go test ./interaction`; after a deliberate change of
// behaviour, regenerate the transcripts with
// `go test ./interaction -rewrite` and review the diff.
//
// The commands a script may use are listed in interaction_test.go.
package interaction
