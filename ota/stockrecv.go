package ota

import (
	"bytes"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// StockReceiver is a faithful model of the C++ receiver (ota.hpp,
// docs/protocol.md §8.4), bugs included: stop-and-wait requests, 30 s × 10
// retries, broadcast mode only led by a root receiver (Q-19 a), waiting
// non-root receivers that never notice a lost tail (Q-19 b), and unicast
// fallback requests sent in the root's name (Q-19 h). It exists to measure
// and test against what stock nodes do; use Receiver for real nodes.
type StockReceiver struct {
	Role     string
	Hardware string
	Root     bool
	// Installed is the md5 of the running image (currentFW.md5).
	Installed string
	// Image is the last image written successfully.
	Image []byte
	// Done is when the last update completed (zero: never).
	Done time.Time

	host   mesh.Host
	update struct {
		md5         string
		partNo      uint32
		broadcasted bool
		compressed  bool
	}
	buf   bytes.Buffer
	task  *stockTask
	Sends int // DataRequests sent
}

type stockTask struct {
	req  stockMsg
	left int
	next time.Time
}

// Attach implements mesh.Plugin.
func (s *StockReceiver) Attach(h mesh.Host) { s.host = h }

// Types implements mesh.Plugin.
func (s *StockReceiver) Types() []int {
	return []int{protocol.TypeOTAAnnounce, protocol.TypeOTAData}
}

// HandlePackage implements mesh.Plugin.
func (s *StockReceiver) HandlePackage(now time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) {
	m, err := decodeStock(raw)
	if err != nil {
		return
	}
	switch h.Type {
	case protocol.TypeOTAAnnounce:
		s.onAnnounce(now, m)
	case protocol.TypeOTAData:
		s.onData(now, m)
	}
}

func (s *StockReceiver) onAnnounce(now time.Time, a *stockMsg) {
	if a.Role != s.Role || a.Hardware != s.Hardware {
		return
	}
	if (a.MD5 == s.Installed && !a.Forced) || a.MD5 == s.update.md5 {
		return
	}
	s.update.md5, s.update.broadcasted, s.update.compressed = a.MD5, a.Broadcasted, a.Compressed
	if !a.Broadcasted || s.Root {
		req := *a
		req.Type, req.Routing = protocol.TypeOTADataRequest, int(protocol.RouteSingle)
		req.From, req.Dest, req.PartNo = s.host.ID(), a.From, s.update.partNo
		s.startTask(now, req)
	}
}

func (s *StockReceiver) startTask(now time.Time, req stockMsg) {
	s.task = &stockTask{req: req, left: 10, next: now}
	s.runTask(now)
}

func (s *StockReceiver) runTask(now time.Time) {
	t := s.task
	if t == nil || now.Before(t.next) {
		return
	}
	if t.left == 0 {
		// "Did not receive the requested data": forget the md5 so the
		// next announce restarts; partNo is kept (Q-19 d).
		s.task = nil
		s.update.md5 = ""
		return
	}
	req := t.req
	_ = s.host.SendPackage(now, &req)
	s.Sends++
	t.left--
	t.next = now.Add(30 * time.Second)
}

func (s *StockReceiver) onData(now time.Time, d *stockMsg) {
	if d.MD5 != s.update.md5 || d.Role != s.Role || d.Hardware != s.Hardware || s.update.md5 == "" {
		return
	}
	if d.PartNo != s.update.partNo {
		if s.update.broadcasted && d.Broadcasted {
			s.update.broadcasted = false
			req := *d
			req.Type, req.Routing, req.Data = protocol.TypeOTADataRequest, int(protocol.RouteSingle), ""
			req.From, req.Dest, req.PartNo, req.Broadcasted = d.Dest, d.From, s.update.partNo, false // Q-19 h
			s.startTask(now, req)
		}
		return
	}
	if d.PartNo == 0 {
		s.buf.Reset()
	}
	s.buf.Write(protocol.DecodeBase64Lenient(d.Data))
	if d.PartNo == d.NoPart-1 {
		s.task = nil
		if md5hexOf(s.buf.Bytes()) == d.MD5 {
			s.Installed = d.MD5
			s.Image = bytes.Clone(s.buf.Bytes())
			s.Done = now
			s.update.md5 = ""
		} else {
			s.update.md5 = ""
		}
		s.update.partNo = 0
		return
	}
	s.update.partNo++
	if s.task != nil {
		req := *d
		req.Type, req.Routing, req.Data = protocol.TypeOTADataRequest, int(protocol.RouteSingle), ""
		req.From, req.Dest, req.PartNo = d.Dest, d.From, s.update.partNo // replyTo: in the Data's name (Q-19 h)
		s.startTask(now, req)
	}
}

// Tick implements mesh.Plugin.
func (s *StockReceiver) Tick(now time.Time) { s.runTask(now) }

// NextDeadline implements mesh.Plugin.
func (s *StockReceiver) NextDeadline() time.Time {
	if s.task == nil {
		return time.Time{}
	}
	return s.task.next
}
