package ota

import (
	"crypto/ed25519"
	"log/slog"
	"time"
)

// ReceiverConfig configures a Receiver. Zero durations take the defaults
// noted on each field.
type ReceiverConfig struct {
	Role     string // this node's role (stock initOTAReceive(role))
	Hardware string // "ESP32", "ESP8266", "linux/arm64", ...
	Store    Store
	// PublicKey, when set, makes the receiver install only images whose
	// Offer carries a manifest signed with it (firmware.Manifest) that
	// names this node's role and hardware and a security counter at least
	// the store's (or is a signed downgrade); the image's SHA-256 must
	// match the manifest. Images without a manifest (signed the older
	// way, over the image only, or not at all) and stock announces are
	// refused.
	PublicKey ed25519.PublicKey
	// RequireSigned refuses every image while PublicKey is nil, instead
	// of installing unverified ones (a node that runs what it installs).
	RequireSigned bool
	// Root mirrors stock setRoot(true): only a root receiver leads a
	// stock broadcast transfer (PROTOCOL.md §8.5).
	Root bool
	// Radio paces the chunks this node serves to its children.
	Radio Radio

	RequestRetry  time.Duration // stock request retry, 30 s
	RequestTries  int           // stock sends per part before waiting for the next announce, 10
	BroadcastWait time.Duration // stock broadcast: no data this long → request ourselves, 60 s

	Window      int           // pipelined: chunks outstanding, default the offer's or 8
	NeedWindow  int           // broadcast: repair chunks outstanding, 16
	NeedTimeout time.Duration // broadcast: repair wait before asking again, 1 s
	// PostPushTimeout is the repair wait once the push is over, until a
	// round trip has been measured, 300 ms (about seven chunk airtimes on
	// an ESP8266: a parent serving a few siblings first still answers).
	PostPushTimeout time.Duration
	IdleTimeout     time.Duration // broadcast: no chunk this long while incomplete → ask, at most 6 s (4 push gaps)
	ReportInterval  time.Duration // progress reports to the distributor, 10 s
	ProgressEvery   time.Duration // progress events while downloading, 1 s
	MaxFailures     int           // verification failures per transfer before backing off, 3
	// FailureBackoff is how long a transfer that failed verification
	// MaxFailures times in a row is left alone before the next offer or
	// announce of it is taken up again, 5 min; it doubles with every
	// such round, up to MaxFailureBackoff (1 h).
	FailureBackoff    time.Duration
	MaxFailureBackoff time.Duration
	// WriteBuffer bounds the bytes of received chunks held in memory
	// until the driver has written them (chunkwrites.go), 64 KiB; a
	// chunk that does not fit is dropped and fetched again, as if lost.
	WriteBuffer int

	// SelfTest decides whether a freshly switched image is healthy; it is
	// asked SelfTestDelay after boot. Nil: the application must call
	// Confirm (a Linux node's restarted process reports in) before the
	// store's deadline, or the image rolls back.
	SelfTest      func(md5 string) bool
	SelfTestDelay time.Duration
	// ServeConfirmed answers children's repair asks for the image this
	// node runs, confirmed, from its running slot (serveconfirmed.go):
	// after the reboot into it the transfer's staged chunks are gone, and
	// a straggler below would otherwise fetch everything from the root.
	// Uncompressed transfers only.
	ServeConfirmed bool
	// PeerToPeer makes this node a peer of the image's distribution
	// (peers.go): it serves what ServeConfirmed serves, compressed
	// transfers too, to any node that asks, not only its children; it
	// offers the image it runs to a neighbour that connects; and it asks
	// for missing chunks from the nearest node that may hold them
	// (sources.go) before going up the path to the distributor.
	PeerToPeer bool
	// Restart, when set, is called after a switch or a rollback so the
	// driver restarts the node into the other slot (a new Receiver then
	// boots it). Nil: the receiver boots the new slot in place.
	Restart func(now time.Time)

	Seed   uint64 // jitter source (deterministic)
	Logger *slog.Logger
}

func (c *ReceiverConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RequestRetry, 30*time.Second)
	def(&c.BroadcastWait, 60*time.Second)
	def(&c.NeedTimeout, time.Second)
	def(&c.PostPushTimeout, 300*time.Millisecond)
	def(&c.IdleTimeout, 6*time.Second)
	def(&c.ReportInterval, 10*time.Second)
	def(&c.ProgressEvery, time.Second)
	def(&c.FailureBackoff, 5*time.Minute)
	def(&c.MaxFailureBackoff, time.Hour)
	if c.RequestTries <= 0 {
		c.RequestTries = 10
	}
	if c.NeedWindow <= 0 {
		c.NeedWindow = 16
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = 3
	}
	if c.WriteBuffer <= 0 {
		c.WriteBuffer = 64 << 10
	}
	if c.Radio == (Radio{}) {
		c.Radio = DefaultRadio
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
