// Package console is the line-oriented interface of `meshfleet node`:
// events as JSON lines out, simple text commands in.
package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// object builds one JSON object with keys in the order added, so every
// line starts with "t" and "event" whatever the event.
type object struct{ buf []byte }

func newObject(t time.Time, event string) *object {
	o := &object{buf: make([]byte, 0, 128)}
	o.buf = append(o.buf, '{')
	o.str("t", t.Format(time.RFC3339Nano))
	o.str("event", event)
	return o
}

func (o *object) key(k string) {
	if len(o.buf) > 1 {
		o.buf = append(o.buf, ',')
	}
	o.buf = strconv.AppendQuote(o.buf, k) // keys are plain ASCII
	o.buf = append(o.buf, ':')
}

func (o *object) str(k, v string) {
	o.key(k)
	o.buf = appendString(o.buf, v)
}

func (o *object) uint(k string, v uint64) {
	o.key(k)
	o.buf = strconv.AppendUint(o.buf, v, 10)
}

func (o *object) int(k string, v int64) {
	o.key(k)
	o.buf = strconv.AppendInt(o.buf, v, 10)
}

// raw adds v as JSON if it is valid JSON, else as a string.
func (o *object) raw(k string, v []byte) {
	o.key(k)
	if json.Valid(v) {
		var c bytes.Buffer
		if json.Compact(&c, v) == nil {
			o.buf = append(o.buf, c.Bytes()...)
			return
		}
	}
	o.buf = appendString(o.buf, string(v))
}

func (o *object) value(k string, v any) {
	b, err := marshal(v)
	if err != nil {
		o.str(k, fmt.Sprint(v))
		return
	}
	o.key(k)
	o.buf = append(o.buf, b...)
}

func (o *object) bytes() []byte { return append(o.buf, '}', '\n') }

// marshal is json.Marshal without HTML escaping and without the newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

func appendString(dst []byte, s string) []byte {
	b, _ := marshal(s) // a string always marshals
	return append(dst, b...)
}

// EventLine renders ev, seen at t, as one JSON line:
//
//	{"t":"<RFC 3339>","event":"receive","type":"broadcast"|"single","from":N,"msg":"..."}
//	{"t":...,"event":"package","conn":C,"type":T,"routing":"single"|...,"from":N,"dest":N,"json":{...}}
//	{"t":...,"event":"new_connection","conn":C,"node":N}
//	{"t":...,"event":"changed_connections","node":N}
//	{"t":...,"event":"dropped_connection","conn":C,"node":N,"reason":"..."}
//	{"t":...,"event":"time_adjusted","node":N,"offset_us":O}
//	{"t":...,"event":"delay","node":N,"delay_us":D}
//
// Events that implement Named (the OTA events of package linuxnode) are
// written as "event":EventName() with their fields. Events of other types
// (plugins') are written as "event":"plugin" with their Go type name and
// their JSON encoding under "data".
func EventLine(t time.Time, ev mesh.Event) []byte {
	var o *object
	switch e := ev.(type) {
	case mesh.MessageReceived:
		o = newObject(t, "receive")
		kind := "broadcast"
		if e.Type == protocol.TypeSingle {
			kind = "single"
		}
		o.str("type", kind)
		o.uint("from", uint64(e.From))
		o.str("msg", e.Msg)
	case mesh.PackageReceived:
		o = newObject(t, "package")
		o.uint("conn", uint64(e.Conn))
		o.int("type", int64(e.Header.Type))
		o.str("routing", e.Header.Routing.String())
		o.uint("from", uint64(e.Header.From))
		o.uint("dest", uint64(e.Header.Dest))
		o.raw("json", e.JSON)
	case mesh.NewConnection:
		o = newObject(t, "new_connection")
		o.uint("conn", uint64(e.Conn))
		o.uint("node", uint64(e.NodeID))
	case mesh.ChangedConnections:
		o = newObject(t, "changed_connections")
		o.uint("node", uint64(e.NodeID))
	case mesh.DroppedConnection:
		o = newObject(t, "dropped_connection")
		o.uint("conn", uint64(e.Conn))
		o.uint("node", uint64(e.NodeID))
		o.str("reason", e.Reason)
	case mesh.TimeAdjusted:
		o = newObject(t, "time_adjusted")
		o.uint("node", uint64(e.NodeID))
		o.int("offset_us", int64(e.Offset))
	case mesh.DelayMeasured:
		o = newObject(t, "delay")
		o.uint("node", uint64(e.NodeID))
		o.int("delay_us", int64(e.Delay))
	case Named:
		o = newObject(t, e.EventName())
		o.members(e)
	default:
		o = newObject(t, "plugin")
		o.str("go_type", fmt.Sprintf("%T", ev))
		o.value("data", ev)
	}
	return o.bytes()
}

// Named is a plugin event with a line of its own: "event" is its
// EventName, followed by the members of its JSON encoding (which must not
// use the keys "t" and "event").
type Named interface {
	mesh.Event
	EventName() string
}

// members adds the members of v's JSON object encoding, or v under "data"
// if it does not encode as an object.
func (o *object) members(v any) {
	b, err := marshal(v)
	if err != nil || len(b) < 2 || b[0] != '{' {
		o.value("data", v)
		return
	}
	if inner := b[1 : len(b)-1]; len(inner) > 0 {
		o.buf = append(o.buf, ',')
		o.buf = append(o.buf, inner...)
	}
}

// errorLine reports a bad command or a failed action.
func errorLine(t time.Time, err error) []byte {
	o := newObject(t, "error")
	o.str("error", err.Error())
	return o.bytes()
}
