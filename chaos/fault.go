package chaos

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// Fault kinds, in the order of the list. Node is a device index
// (0 is the first device, not the root) unless noted; For is how long the
// fault lasts; Arg is the kind's own parameter.
const (
	// Crash powers a device off at At (Arg 1: silently, its peers find
	// out by timeouts; 0: its connections close) and on again after For.
	Crash Kind = "crash"
	// CrashVerify cuts the power at the Arg-th storage operation after
	// the device, from At on, starts verifying an image (decode, check,
	// write the slot); back after For.
	CrashVerify Kind = "crash-verify"
	// CrashSwitch cuts the power at the Arg-th storage operation after
	// the device, from At on, verified an image (switch, origin record).
	CrashSwitch Kind = "crash-switch"
	// CrashBoot cuts the power at the Arg-th storage operation after the
	// device, from At on, restarts into a new image (boot record, self
	// test, confirm).
	CrashBoot Kind = "crash-boot"
	// PowerCut cuts the power at the Arg-th storage operation of the
	// device after At, whatever it is doing; back after For.
	PowerCut Kind = "power-cut"
	// LinkDrop breaks every connection of the device at At (the stations
	// dial again).
	LinkDrop Kind = "link-drop"
	// Flap makes the device's connections flap, every For/Arg on average,
	// for For.
	Flap Kind = "flap"
	// Partition cuts the device and the nodes below it in the root's tree
	// off the rest of the mesh for For.
	Partition Kind = "partition"
	// Loss loses Arg percent of the messages on the device's connections
	// for For.
	Loss Kind = "loss"
	// RelayCrash crashes, once a transfer is under way after At, a device
	// that relays for others (the Node-th of them, counting round) for For.
	RelayCrash Kind = "relay-crash"
	// Corrupt flips a byte of the Arg-th chunk the device writes after At.
	Corrupt Kind = "corrupt"
	// Newer starts a campaign for a newer image at At; the first one
	// fired is the target from then on (Node unused).
	Newer Kind = "newer-image"
	// Gateway restarts the root (the distributor) at At, down for For;
	// it resumes its campaigns as the gateway does, from their last
	// record (Node unused).
	Gateway Kind = "gateway-restart"
	// QueueOverflow shrinks the device's radio queue to Arg bytes for
	// For, so what does not fit is dropped.
	QueueOverflow Kind = "queue-overflow"
	// ClockJump jumps a clock by For at At. Arg 0: the device's own
	// clock forward (micros(), which never goes back), so its timers due
	// within For fire at once; 1: its mesh time forward and 2: backward,
	// as adopting a far partition's clock does, until time sync pulls it
	// back; 3: the root's own clock forward, under the distributor's
	// timers (Node unused).
	ClockJump Kind = "clock-jump"
)

// What a ClockJump's Arg jumps.
const (
	jumpDeviceClock = iota
	jumpMeshForward
	jumpMeshBack
	jumpRootClock
	jumpTargets
)

// Kinds is every fault kind the campaign draws from.
var Kinds = []Kind{Crash, CrashVerify, CrashSwitch, CrashBoot, PowerCut, LinkDrop, Flap, Partition, Loss,
	RelayCrash, Corrupt, Newer, Gateway, QueueOverflow, ClockJump}

// Fault is one scheduled fault.
type Fault struct {
	Kind Kind
	At   time.Duration // after the campaign started
	Node int           // device index
	For  time.Duration
	Arg  int
}

// String is the fault in the form ParseFaults reads:
// kind@at:node:for:arg, e.g. crash@41.2s:12:20s:0.
func (f Fault) String() string {
	return fmt.Sprintf("%s@%s:%d:%s:%d", f.Kind, f.At, f.Node, f.For, f.Arg)
}

// FormatFaults joins faults for the --faults flag.
func FormatFaults(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.String()
	}
	return strings.Join(parts, ",")
}

// ParseFaults reads a schedule written by FormatFaults. An empty string is
// an empty schedule.
func ParseFaults(s string) ([]Fault, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []Fault{}, nil
	}
	var out []Fault
	for _, part := range strings.Split(s, ",") {
		f, err := parseFault(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("chaos: fault %q: %w", part, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseFault(s string) (Fault, error) {
	kind, rest, ok := strings.Cut(s, "@")
	if !ok {
		return Fault{}, fmt.Errorf("want kind@at:node:for:arg")
	}
	if !slices.Contains(Kinds, Kind(kind)) {
		return Fault{}, fmt.Errorf("unknown kind %q", kind)
	}
	fields := strings.Split(rest, ":")
	if len(fields) != 4 {
		return Fault{}, fmt.Errorf("want kind@at:node:for:arg")
	}
	f := Fault{Kind: Kind(kind)}
	var err error
	if f.At, err = time.ParseDuration(fields[0]); err != nil || f.At < 0 {
		return Fault{}, fmt.Errorf("at %q: want a duration ≥ 0", fields[0])
	}
	if f.Node, err = strconv.Atoi(fields[1]); err != nil || f.Node < 0 {
		return Fault{}, fmt.Errorf("node %q: want a device index ≥ 0", fields[1])
	}
	if f.For, err = time.ParseDuration(fields[2]); err != nil || f.For < 0 || f.For > maxFaultFor {
		return Fault{}, fmt.Errorf("for %q: want a duration in 0..%s", fields[2], maxFaultFor)
	}
	if f.Arg, err = strconv.Atoi(fields[3]); err != nil || f.Arg < 0 || f.Arg > 1<<20 {
		return Fault{}, fmt.Errorf("arg %q: want 0..%d", fields[3], 1<<20)
	}
	if f.Kind == ClockJump && f.Arg >= jumpTargets {
		return Fault{}, fmt.Errorf("arg %d: a clock jump takes 0..%d", f.Arg, jumpTargets-1)
	}
	if f.At > maxFaultAt {
		return Fault{}, fmt.Errorf("at %s: want at most %s", f.At, maxFaultAt)
	}
	return f, nil
}

// Bounds of an explicit schedule, so a typo cannot ask for days of
// simulated time.
const (
	maxFaultAt  = 2 * time.Hour
	maxFaultFor = time.Hour
)

// drawFaults draws a schedule of count faults for a fleet of devices,
// half of them within transfer, the others within window. Durations stay short next to the receivers' own timers, so the
// campaign can finish once the faults are over.
func drawFaults(rng *rand.Rand, count, devices int, transfer, window time.Duration) []Fault {
	var out []Fault
	newer := false
	for range count {
		k := Kinds[rng.IntN(len(Kinds))]
		if k == Newer {
			if newer {
				k = Crash // one newer image per run is enough to supersede
			}
			newer = true
		}
		span := window
		if rng.IntN(2) == 0 {
			span = transfer
		}
		f := Fault{Kind: k, At: roundMs(time.Duration(rng.Int64N(int64(span)))), Node: rng.IntN(devices)}
		between := func(lo, hi time.Duration) time.Duration {
			return roundMs(lo + time.Duration(rng.Int64N(int64(hi-lo))))
		}
		switch k {
		case Crash:
			f.For, f.Arg = between(time.Second, 60*time.Second), rng.IntN(2)
		case CrashVerify:
			f.For, f.Arg = between(time.Second, 20*time.Second), rng.IntN(6)
		case CrashSwitch:
			f.For, f.Arg = between(time.Second, 20*time.Second), rng.IntN(6)
		case CrashBoot:
			f.For, f.Arg = between(time.Second, 20*time.Second), rng.IntN(8)
		case PowerCut:
			f.For, f.Arg = between(time.Second, 30*time.Second), rng.IntN(40)
		case Flap:
			f.For, f.Arg = between(10*time.Second, 90*time.Second), 2+rng.IntN(8)
		case Partition:
			f.For = between(5*time.Second, 120*time.Second)
		case Loss:
			f.For, f.Arg = between(5*time.Second, 60*time.Second), 10+rng.IntN(60)
		case RelayCrash:
			f.For = between(5*time.Second, 60*time.Second)
		case Corrupt:
			f.Arg = rng.IntN(20)
		case Newer:
			f.Node = 0
		case Gateway:
			f.Node, f.For = 0, between(time.Second, 30*time.Second)
		case QueueOverflow:
			f.For, f.Arg = between(5*time.Second, 60*time.Second), 1024+rng.IntN(6*1024)
		case ClockJump:
			// From a second, about a retry or a node timeout, to ten
			// minutes, past every receiver and distributor timer.
			f.For, f.Arg = between(time.Second, 10*time.Minute), rng.IntN(jumpTargets)
			if f.Arg == jumpRootClock {
				f.Node = 0
			}
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	return out
}

func roundMs(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
