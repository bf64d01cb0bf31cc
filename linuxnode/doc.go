// Package linuxnode makes a Go mesh node running on Linux (`meshfleet
// node`) an OTA receiver and a status reporter: the glue between the
// sans-IO plugins (ota.Receiver, status.Reporter), the A/B slot store on
// disk (package slot) and the process that runs them.
//
// # What an update is on a Linux node
//
// An image is a file. The receiver downloads it chunk by chunk into the
// slot store's staging area (flushed every few chunks and when the node
// stops, so a restart resumes where it was), decodes and verifies it (MD5,
// and with a public key its signed manifest: role, hardware, SHA-256 and
// security counter) into the inactive slot's
// file, slot-a.bin or slot-b.bin in the slot directory, and switches:
// the slot store marks that slot pending, to run at the next start.
//
// Switching does not replace the running program. The node reports
// "switched" with the slot file's path (OTAEvent.SlotPath), stops taking
// part in OTA (it still runs the old image), and runs the --on-switch
// command, if any, with that path appended: installing the file and
// restarting the service is the command's business (with
// --exit-on-slot-change the node exits after it, for its supervisor to
// start it again; the command itself must not wait for the node to stop).
// A failing command abandons the switch: the image rolls back, since it
// was never installed. The completed installation is recorded in the
// slot directory (installed.json; without a command, at the switch): if
// the node stops before the command finished, the image rolls back at the
// next start instead of being confirmed by the old program.
//
// The next start with the same slot directory is the new image's first
// boot: it runs on trial (OTAEvent "trial" with the deadline) and is
// confirmed as soon as the node joins the mesh, at its first successful
// node sync — the restarted process reporting in. The confirmation goes
// straight to the distributor the image came from (kept in the slot
// directory's ota-origin.json), once. If the node does not join within
// the confirm timeout, counted from the first start of the new image, or
// starts MaxBoots times without joining (it keeps crashing), the slot
// store rolls back: the event says "rolled_back" with the reason, the
// previous slot is the one to run, the --on-rollback command runs with its
// file (none for the factory image, which the slot store has no file of),
// and the distributor is told from the next start, once. A rolled-back image is
// not downloaded again.
//
// Everything the plugins do happens inside the driver's loop, except the
// receiver's slow store work (flushing, decoding and verifying the image
// into its slot, switching), which the driver runs on a worker goroutine
// and answers through the loop; the hook commands run in Device.Run,
// beside it, and report back through the loop.
package linuxnode
