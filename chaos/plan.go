package chaos

import (
	"crypto/ed25519"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/ota"
)

// Plan is what a seed draws: the mesh, the campaign and the faults.
type Plan struct {
	Seed      uint64   `json:"seed"`
	Devices   int      `json:"devices"`
	Mode      ota.Mode `json:"mode"`
	Method    string   `json:"method"`
	ImageSize int      `json:"image_size"`
	Signed    bool     `json:"signed"`
	// PeerToPeer: the receivers fetch from the nearest holder first.
	PeerToPeer bool    `json:"peer_to_peer"`
	Loss       float64 `json:"loss"` // background loss on every link
	// Receiver is what the devices run: ours (ota.Receiver on a slot
	// store) or the model of the stock C++ receiver on its flash, which
	// only stock and stock-turbo campaigns can serve.
	Receiver Receiver `json:"receiver"`
	Faults   []Fault  `json:"-"`
	// Transfer is about how long the transfer takes, Window the span the
	// faults are drawn over, both from the start of the campaign.
	Transfer time.Duration `json:"transfer"`
	Window   time.Duration `json:"window"`
}

// Modes the campaign draws from by default: the fast modes, the stock
// protocol and stock-turbo; the stock ones run to either receiver.
var DefaultModes = []ota.Mode{ota.ModePipelined, ota.ModeBroadcast, ota.ModeStock, ota.ModeStockTurbo}

// Receiver is the OTA receiver a plan's devices run.
type Receiver string

const (
	// OurReceiver is ota.Receiver on an A/B slot store.
	OurReceiver Receiver = "ours"
	// StockReceiver is the model of the stock C++ receiver
	// (internal/stockota) on a model of an ESP32's flash.
	StockReceiver Receiver = "stock"
)

// DefaultReceivers are what stock campaigns draw from.
var DefaultReceivers = []Receiver{OurReceiver, StockReceiver}

// ParseReceiver parses a receiver name.
func ParseReceiver(s string) (Receiver, error) {
	switch r := Receiver(s); r {
	case OurReceiver, StockReceiver:
		return r, nil
	}
	return "", fmt.Errorf("unknown receiver %q (want ours or stock)", s)
}

func isStock(m ota.Mode) bool { return m == ota.ModeStock || m == ota.ModeStockTurbo }

// methods are the compressions a fast mode draws from.
var methods = []string{"none", "deflate", "heatshrink"}

// NewPlan draws seed's plan for cfg. The faults come from their own
// stream, after the rest, so an explicit schedule leaves the mesh and the
// campaign as they were.
func NewPlan(cfg Config, seed uint64) Plan {
	cfg.defaults()
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	p := Plan{Seed: seed}
	p.Devices = cfg.MinNodes + rng.IntN(cfg.MaxNodes-cfg.MinNodes+1)
	p.Mode = cfg.Modes[rng.IntN(len(cfg.Modes))]
	p.Method = "none"
	if !isStock(p.Mode) {
		p.Method = methods[rng.IntN(len(methods))]
	}
	p.ImageSize = cfg.MinImage + rng.IntN(cfg.MaxImage-cfg.MinImage+1)
	p.Signed = rng.IntN(2) == 0
	p.PeerToPeer = rng.IntN(2) == 0
	p.Loss = []float64{0, 0, 0.005, 0.02}[rng.IntN(4)]
	// Drawn last, so that the draws before it stay what they were.
	p.Receiver = OurReceiver
	switch p.Mode {
	case ota.ModeStock:
		p.Receiver = cfg.Receivers[rng.IntN(len(cfg.Receivers))]
	case ota.ModeStockTurbo:
		// It serves stock receivers: ours do not follow its broadcast
		// Data (they take the stock protocol's unicast answers).
		p.Receiver = StockReceiver
	}
	// Half the faults fall while the transfer runs (a fast mode pushes to
	// every node at once in seconds, stock serves each node in turn), the
	// others over the whole campaign: verification, switch, first boot
	// and the outcome reports, which go with the announces a minute apart.
	p.Transfer = 5*time.Second + time.Duration(p.ImageSize/1024)*200*time.Millisecond
	if isStock(p.Mode) {
		p.Transfer = time.Duration(p.Devices*p.ImageSize/1024) * 15 * time.Millisecond
	}
	p.Window = 2*p.Transfer + 90*time.Second
	frng := rand.New(rand.NewPCG(seed, 0x6661756c7473)) // "faults"
	if cfg.Faults != nil {
		p.Faults = append([]Fault(nil), cfg.Faults...)
	} else {
		p.Faults = drawFaults(frng, 1+frng.IntN(cfg.MaxFaults), p.Devices, p.Transfer, p.Window)
	}
	return p
}

func (p Plan) String() string {
	return fmt.Sprintf("%d devices, %s/%s to %s receivers, %d-byte image, signed=%v, p2p=%v, loss %.3f, %d faults",
		p.Devices, p.Mode, p.Method, p.Receiver, p.ImageSize, p.Signed, p.PeerToPeer, p.Loss, len(p.Faults))
}

// Role and hardware of every simulated device.
const (
	role     = "sensor"
	hardware = "ESP32"
)

// images are the run's firmware: the factory image every device starts
// with, the campaign's target and a newer one (Newer).
type images struct {
	factory string // md5
	target  ota.Image
	newer   ota.Image
	pub     ed25519.PublicKey
}

func makeImages(p Plan) (images, error) {
	rng := rand.New(rand.NewPCG(p.Seed, 0x696d61676573)) // "images"
	var im images
	im.factory = md5hex(imageBytes(rng, p.ImageSize))
	var priv ed25519.PrivateKey
	if p.Signed {
		var seed [ed25519.SeedSize]byte
		binary.LittleEndian.PutUint64(seed[:], p.Seed)
		priv = ed25519.NewKeyFromSeed(seed[:])
		im.pub = priv.Public().(ed25519.PublicKey)
	}
	make1 := func(version string, counter uint64, size int) (ota.Image, error) {
		img := ota.Image{Role: role, Hardware: hardware, Version: version, Data: imageBytes(rng, size)}
		img.MD5 = md5hex(img.Data)
		if priv != nil {
			m := firmware.NewManifest(img.Data, firmware.Meta{Role: role, Hardware: hardware, Version: version}, counter, false)
			var err error
			if img.Manifest, img.ManifestSig, err = firmware.SignManifest(m, priv); err != nil {
				return img, err
			}
		}
		return img, nil
	}
	var err error
	if im.target, err = make1("2.0.0", 2, p.ImageSize); err != nil {
		return im, err
	}
	im.newer, err = make1("3.0.0", 3, p.ImageSize+rng.IntN(4096))
	return im, err
}

// imageBytes makes an image that compresses about as firmware does: runs
// of random bytes mixed with repeats of earlier stretches.
func imageBytes(rng *rand.Rand, size int) []byte {
	out := make([]byte, 0, size)
	for len(out) < size {
		n := min(16+rng.IntN(240), size-len(out))
		if len(out) > 256 && rng.IntN(3) > 0 {
			from := rng.IntN(len(out) - n)
			if from >= 0 {
				out = append(out, out[from:from+n]...)
				continue
			}
		}
		for range n {
			out = append(out, byte(rng.Uint32()))
		}
	}
	return out
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
