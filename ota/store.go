package ota

import (
	"crypto/ed25519"
	"time"
)

// Transfer describes one download to the store: the image it installs and
// the bytes that travel (compressed or not).
type Transfer struct {
	Image        string // md5 of the uncompressed image
	ImageSize    int64  // 0 when unknown (stock announces do not say)
	Method       string // none | deflate | heatshrink
	TransferSize int64  // 0 when unknown (stock)
	TransferMD5  string
	ChunkSize    int
	Chunks       int
	Signature    []byte
	Version      string
	Role         string
	Hardware     string
	SHA256       string // of the uncompressed image, from a verified manifest; checked by Finish when set
	Counter      uint64 // the image's security counter (from its manifest)
}

// Store is the receiver's persistent A/B slot store. SlotStore adapts
// slot.Store to it; tests use an in-memory one.
type Store interface {
	// Begin starts a download, or resumes it when the same transfer is
	// already staged (chunks already written stay written).
	Begin(t Transfer) (Download, error)
	// Finish decodes the staged transfer into the inactive slot and
	// verifies the image md5, the SHA-256 when the transfer names one,
	// and, with a key, the signature over the image. It never switches;
	// a verification failure discards the staged chunks.
	Finish(d Download, pub ed25519.PublicKey) error
	// Switch makes the verified inactive slot the one to boot next.
	Switch() error
	// Boot is called once per process start. It reports whether the
	// running image is a trial that must be confirmed before deadline.
	Boot(now time.Time) (trial bool, deadline time.Time, err error)
	// Confirm marks the running trial image good.
	Confirm(now time.Time) error
	// Rollback abandons a trial image: the previous slot boots next.
	Rollback(now time.Time) error
	// Active is the md5 of the running image ("" when unknown) and
	// whether it is confirmed.
	Active() (md5 string, confirmed bool)
	// Outcome of the last update that finished with a reboot (set by
	// Boot when a trial expired and rolled back), so it can be reported.
	LastRollback() (md5 string, ok bool)
	// SecurityCounter is the highest security counter of the images
	// confirmed here; it survives restarts and never goes down.
	SecurityCounter() uint64
}

// Download is one staged transfer.
type Download interface {
	Has(i int) bool
	Count() int
	Done() bool
	WriteChunk(i int, data []byte) error
	ReadChunk(i int) ([]byte, error)
	Flush() error
}

// StagedStore is implemented by stores that can say which transfer they
// have staged, so a receiver on the stock protocol (which never announces
// the chunk size) resumes after a restart without fetching chunk 0 again.
type StagedStore interface {
	Staged() (Transfer, bool)
}

// Origin is where the image switched to came from: the transfer (campaign)
// id and the distributor that offered it. The outcome of the trial
// (confirmed or rolled back) is reported there, also when it is known only
// after a restart.
type Origin struct {
	Image       string `json:"image"` // md5 of the switched image
	Transfer    string `json:"transfer"`
	Distributor uint32 `json:"distributor"`
	// Reported is set once the outcome reached the mesh, so a later start
	// does not report it again.
	Reported bool `json:"reported,omitempty"`
}

// OriginStore is implemented by stores that keep the Origin of the last
// switched image across a restart. Without it a receiver that restarts
// into a trial image reports the outcome with the next offer of that
// image.
type OriginStore interface {
	SetOrigin(o Origin) error
	Origin() (Origin, bool)
}
