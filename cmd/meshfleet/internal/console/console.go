package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Usage lists the commands Run understands.
const Usage = "broadcast TEXT | single ID TEXT | nodes | tree | delay ID | help"

// MaxLineLength bounds one input line; longer lines are rejected whole.
const MaxLineLength = 1 << 20

// ErrBadCommand is wrapped by every error about an input line.
var ErrBadCommand = errors.New("bad command")

// ErrNoLinks: a broadcast was asked for while the node had no synced
// connection, so it went nowhere.
var ErrNoLinks = errors.New("no links: not sent")

// Run runs d until ctx ends or in reaches EOF, writing the node's events
// and the answers to commands read from in as JSON lines on out. It
// returns the driver's error, if any, after the driver has shut down and
// every event has been written.
//
// Besides the node's events Run writes its own: "listening" first (if d
// listens), "nodes" whenever the node list changes, "dropped" when events
// were lost because out did not keep up (the driver never waits for its
// reader, so the mesh keeps running), and "stopped" last, with the total
// of events dropped. Every event the node emitted is either printed or
// counted in a "dropped" line.
func Run(ctx context.Context, d *tcp.Driver, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	c := &console{d: d, out: bufio.NewWriterSize(out, 64<<10)}
	if addr := d.Addr(); addr != nil {
		o := newObject(time.Now(), "listening")
		o.uint("node", uint64(d.ID()))
		o.str("addr", addr.String())
		c.write(o.bytes())
	}
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		c.printEvents(ctx)
	}()

	// Reading in cannot be interrupted; the goroutine ends at EOF or with
	// the process (os.Stdin). Lines go through a channel so that ctx can
	// end Run while a read is blocked.
	lines := make(chan string)
	go readLines(ctx, in, lines, func(err error) { c.write(errorLine(time.Now(), err)) })

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case line, ok := <-lines:
			if !ok {
				break loop
			}
			if err := c.command(ctx, line); err != nil {
				c.write(errorLine(time.Now(), err))
			}
		}
	}
	cancel()
	err := <-runErr
	<-eventsDone
	// Events is closed: the driver's count of dropped events is final.
	c.reportDrops()
	o := newObject(time.Now(), "stopped")
	o.uint("events_dropped", c.dropsReported)
	c.write(o.bytes())
	return err
}

// printEvents writes the driver's events until Events is closed. Lines
// are buffered while more events wait and flushed when the backlog is
// empty, so a burst costs few writes.
func (c *console) printEvents(ctx context.Context) {
	var nodes []uint32
	for ev := range c.d.Events() {
		// Events are dropped oldest first, so the drops counted now were
		// of events before ev (but for any in the instant since ev was
		// received): report them before it.
		listMayHaveChanged := c.reportDrops()
		c.writeBuffered(EventLine(time.Now(), ev))
		switch ev.(type) {
		case mesh.NewConnection, mesh.ChangedConnections, mesh.DroppedConnection:
			listMayHaveChanged = true
		}
		if listMayHaveChanged {
			nodes = c.reportNodes(ctx, nodes)
		}
		if len(c.d.Events()) == 0 {
			c.flush()
		}
	}
}

// reportDrops writes a "dropped" line if the driver dropped events since
// the last one, and says whether it did.
func (c *console) reportDrops() bool {
	total := c.d.Stats().EventsDropped
	if total == c.dropsReported {
		return false
	}
	o := newObject(time.Now(), "dropped")
	o.uint("count", total-c.dropsReported)
	o.uint("total", total)
	c.writeBuffered(o.bytes())
	c.dropsReported = total
	return true
}

// reportNodes writes a "nodes" line if the node list differs from last,
// and returns the current list.
func (c *console) reportNodes(ctx context.Context, last []uint32) []uint32 {
	var now []uint32
	if err := c.d.Do(ctx, func(_ time.Time, n *mesh.Node) { now = n.NodeList(false) }); err != nil {
		return last // stopping
	}
	added, removed := []uint32{}, []uint32{}
	for _, id := range now {
		if _, found := slices.BinarySearch(last, id); !found {
			added = append(added, id)
		}
	}
	for _, id := range last {
		if _, found := slices.BinarySearch(now, id); !found {
			removed = append(removed, id)
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		return last
	}
	o := newObject(time.Now(), "nodes")
	o.uint("self", uint64(c.d.ID()))
	o.value("nodes", append([]uint32{}, now...))
	o.value("added", added)
	o.value("removed", removed)
	c.writeBuffered(o.bytes())
	return now
}

// readLines sends each line of in (without its line ending) on lines until
// EOF or ctx ends, then closes lines. Over-long lines are reported with
// bad and skipped.
func readLines(ctx context.Context, in io.Reader, lines chan<- string, bad func(error)) {
	defer close(lines)
	br := bufio.NewReaderSize(in, 64<<10)
	for {
		line, tooLong, err := readLine(br)
		if tooLong {
			bad(fmt.Errorf("%w: line longer than %d bytes ignored", ErrBadCommand, MaxLineLength))
		} else if len(line) > 0 || err == nil {
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line, discarding (and flagging) it if it is longer
// than MaxLineLength.
func readLine(br *bufio.Reader) (line string, tooLong bool, err error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(b)+len(chunk) > MaxLineLength+2 {
				tooLong, b = true, nil
			} else {
				b = append(b, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if tooLong {
			return "", true, err
		}
		return strings.TrimRight(string(b), "\r\n"), false, err
	}
}

type console struct {
	d   *tcp.Driver
	mu  sync.Mutex // one line at a time on out
	out *bufio.Writer

	// dropsReported is the driver's EventsDropped as of the last
	// "dropped" line: printEvents's, then Run's once printEvents is done.
	dropsReported uint64
}

// write writes one line and flushes it.
func (c *console) write(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(line)
	c.out.Flush()
}

// writeBuffered writes one line, leaving it buffered until flush (or a
// full buffer).
func (c *console) writeBuffered(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(line)
}

func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Flush()
}

// command carries out one input line.
func (c *console) command(ctx context.Context, line string) error {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil
	}
	verb, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimLeft(rest, " ")
	switch verb {
	case "broadcast":
		if rest == "" {
			return fmt.Errorf("%w: usage: broadcast TEXT", ErrBadCommand)
		}
		// Counted in the same loop turn as the send, so the count is the
		// links the broadcast went out on.
		var links int
		if err := c.d.Do(ctx, func(now time.Time, n *mesh.Node) {
			links = n.Stats().Connections
			n.SendBroadcast(now, rest, false)
		}); err != nil {
			return fmt.Errorf("broadcast: %w", err)
		}
		if links == 0 {
			return fmt.Errorf("broadcast: %w", ErrNoLinks)
		}
		o := newObject(time.Now(), "sent")
		o.str("type", "broadcast")
		o.uint("links", uint64(links))
		c.write(o.bytes())
	case "single":
		idText, text, _ := strings.Cut(rest, " ")
		text = strings.TrimLeft(text, " ")
		id, err := parseID(idText)
		if err != nil || text == "" {
			return fmt.Errorf("%w: usage: single ID TEXT (ID a node id 1..4294967295)", ErrBadCommand)
		}
		if err := c.d.SendSingle(ctx, id, text); err != nil {
			return fmt.Errorf("single: %w", err)
		}
		o := newObject(time.Now(), "sent")
		o.str("type", "single")
		o.uint("dest", uint64(id))
		c.write(o.bytes())
	case "nodes":
		if rest != "" {
			return fmt.Errorf("%w: usage: nodes", ErrBadCommand)
		}
		var nodes []uint32
		if err := c.d.Do(ctx, func(_ time.Time, n *mesh.Node) { nodes = n.NodeList(false) }); err != nil {
			return fmt.Errorf("nodes: %w", err)
		}
		o := newObject(time.Now(), "nodes")
		o.uint("self", uint64(c.d.ID()))
		o.value("nodes", append([]uint32{}, nodes...))
		c.write(o.bytes())
	case "tree":
		if rest != "" {
			return fmt.Errorf("%w: usage: tree", ErrBadCommand)
		}
		var tree protocol.NodeTree
		if err := c.d.Do(ctx, func(_ time.Time, n *mesh.Node) { tree = n.Tree() }); err != nil {
			return fmt.Errorf("tree: %w", err)
		}
		o := newObject(time.Now(), "tree")
		o.key("tree")
		o.buf = tree.AppendJSON(o.buf)
		c.write(o.bytes())
	case "delay":
		id, err := parseID(rest)
		if err != nil {
			return fmt.Errorf("%w: usage: delay ID (ID a node id 1..4294967295)", ErrBadCommand)
		}
		var ok bool
		if err := c.d.Do(ctx, func(now time.Time, n *mesh.Node) { ok = n.StartDelayMeasurement(now, id) }); err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		if !ok {
			return fmt.Errorf("delay: node %d: %w", id, tcp.ErrUnreachable)
		}
		o := newObject(time.Now(), "delay_requested")
		o.uint("node", uint64(id))
		c.write(o.bytes())
	case "help":
		o := newObject(time.Now(), "help")
		o.str("commands", Usage)
		c.write(o.bytes())
	default:
		return fmt.Errorf("%w: unknown command %q; commands: %s", ErrBadCommand, verb, Usage)
	}
	return nil
}

func parseID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: bad node id %q", ErrBadCommand, s)
	}
	return uint32(v), nil
}
