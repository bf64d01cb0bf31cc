// Package stockota models the OTA receiver of stock painlessMesh (the C++
// ota.hpp), for tests and benchmarks that measure what stock nodes do. It
// is not a receiver for real nodes: that is ota.Receiver.
package stockota

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// Receiver is a faithful model of the C++ receiver (ota.hpp,
// docs/protocol.md §8.4), bugs included: stop-and-wait requests, 30 s × 10
// retries, broadcast mode only led by a root receiver (Q-19 a), waiting
// non-root receivers that never notice a lost tail (Q-19 b), unicast
// fallback requests sent in the root's name (Q-19 h), and request tasks
// as the C++ keeps them: the last one started stays the receiver's after
// it gave up (the next in-sequence Data starts it again, even in
// broadcast mode), and a new one does not stop the one before it, which
// still forgets the md5 when its retries run out (Q-19 i, j; cpp_test.go
// shows each on the C++ receiver).
type Receiver struct {
	Role     string
	Hardware string
	Root     bool
	// Installed is the md5 of the running image (currentFW.md5).
	Installed string
	// Image is the last image written successfully.
	Image []byte
	// Done is when the last update completed (zero: never).
	Done time.Time
	// Flash, if set, is the device's flash (flash.go): chunks go through
	// Update into the partition not running, Installed is read from
	// ota_fn at each boot, and a good image is switched to only after its
	// MD5 check. Without it the image is kept in RAM (Image).
	Flash *Flash
	// Reboot, if set, is ESP.restart(), which ota.hpp schedules 2 s after
	// a good image (without it the model does not reboot).
	Reboot func(now time.Time)

	host   mesh.Host
	update struct {
		md5         string
		partNo      uint32
		broadcasted bool
		compressed  bool
	}
	buf bytes.Buffer
	// task is updateFW.task: the request task last started, kept when it
	// stopped (ota.hpp never clears it).
	task *requestTask
	// running are the request tasks that run (the scheduler's list):
	// starting a task never stops another.
	running []*requestTask
	Sends   int // DataRequests sent
	// rebootAt is when the restart after a good image is due (zero: none).
	rebootAt time.Time
}

// requestTask is a C++ request task: one DataRequest, sent at once and
// again every 30 s, ten times in all; the scheduler stops it on its next
// pass after the tenth, and unless the transfer ended first, that forgets
// the md5 (its onDisable).
type requestTask struct {
	req    protocol.DataRequest
	left   int
	next   time.Time
	on     bool
	forget bool
}

// PartsReceived is how many chunks of the current transfer have arrived.
func (s *Receiver) PartsReceived() uint32 { return s.update.partNo }

// BytesReceived is how many bytes of the current transfer were written.
func (s *Receiver) BytesReceived() int {
	if f := s.Flash; f != nil {
		if f.writing < 0 {
			return 0
		}
		return len(f.Parts[f.writing].Data)
	}
	return s.buf.Len()
}

// Attach implements mesh.Plugin. The mesh attaches the plugin at every
// boot, and a transfer lives in RAM (ota.hpp's updateFW): a restarted node
// starts from chunk 0 on the next Announce, with its installed image.
func (s *Receiver) Attach(h mesh.Host) {
	s.host = h
	s.update.md5, s.update.partNo, s.update.broadcasted, s.update.compressed = "", 0, false, false
	s.buf.Reset()
	s.task, s.running = nil, nil
	s.rebootAt = time.Time{}
	if s.Flash != nil {
		s.Installed = s.Flash.Mount()
	}
}

// Types implements mesh.Plugin.
func (s *Receiver) Types() []int {
	return []int{protocol.TypeOTAAnnounce, protocol.TypeOTAData}
}

// HandlePackage implements mesh.Plugin. Anything that does not decode is
// dropped, as the C++ receiver drops it.
func (s *Receiver) HandlePackage(now time.Time, _ mesh.ConnID, _ protocol.Header, raw []byte) {
	p, err := protocol.Decode(raw)
	if err != nil {
		return
	}
	switch m := p.(type) {
	case *protocol.Announce:
		s.onAnnounce(now, m)
	case *protocol.Data:
		s.onData(now, m)
	}
}

func (s *Receiver) onAnnounce(now time.Time, a *protocol.Announce) {
	if a.Role != s.Role || a.Hardware != s.Hardware {
		return
	}
	if (a.MD5 == s.Installed && !a.Forced) || a.MD5 == s.update.md5 {
		return
	}
	s.update.md5, s.update.broadcasted, s.update.compressed = a.MD5, a.Broadcasted, a.Compressed
	if !a.Broadcasted || s.Root {
		req := protocol.DataRequest{Announce: *a, Dest: a.From, PartNo: s.update.partNo}
		req.Routing, req.From = protocol.RouteSingle, s.host.ID()
		s.startTask(now, req)
	}
}

// startTask starts a new request task (mesh.addTask), which becomes the
// receiver's; one already running runs on.
func (s *Receiver) startTask(now time.Time, req protocol.DataRequest) {
	s.task = &requestTask{forget: true}
	s.restartTask(now, s.task, req)
}

// restartTask gives t a new request and its ten sends again, the first at
// once (Task::restart), whether it was running or had stopped.
func (s *Receiver) restartTask(now time.Time, t *requestTask, req protocol.DataRequest) {
	t.req, t.left, t.next = req, 10, now
	if !t.on {
		t.on = true
		s.running = append(s.running, t)
	}
	s.runTasks(now)
}

// stopTask disables t; onDisable forgets the md5 unless the transfer
// ended.
func (s *Receiver) stopTask(t *requestTask) {
	if !t.on {
		return
	}
	t.on = false
	for i, r := range s.running {
		if r == t {
			s.running = append(s.running[:i], s.running[i+1:]...)
			break
		}
	}
	if t.forget {
		// "Did not receive the requested data": forget the md5 so the
		// next announce restarts; partNo is kept (Q-19 d).
		s.update.md5 = ""
	}
}

func (s *Receiver) runTasks(now time.Time) {
	for _, t := range append([]*requestTask(nil), s.running...) {
		if !t.on || now.Before(t.next) {
			continue
		}
		req := t.req
		_ = s.host.SendPackage(now, &req)
		s.Sends++
		t.left--
		t.next = now.Add(30 * time.Second)
		if t.left == 0 {
			// The scheduler's next pass stops a task whose iterations
			// are done, without waiting another interval.
			s.stopTask(t)
		}
	}
}

// requestNext asks for the next chunk the way the C++ replyTo does: in the
// Data's name, to its sender (Q-19 h).
func requestNext(d *protocol.Data, partNo uint32) protocol.DataRequest {
	req := protocol.DataRequest{Announce: d.Announce, Dest: d.From, PartNo: partNo}
	req.Routing, req.From = protocol.RouteSingle, d.Dest
	return req
}

func (s *Receiver) onData(now time.Time, d *protocol.Data) {
	if d.MD5 != s.update.md5 || d.Role != s.Role || d.Hardware != s.Hardware || s.update.md5 == "" {
		return
	}
	if d.PartNo != s.update.partNo {
		if s.update.broadcasted && d.Broadcasted {
			s.update.broadcasted = false
			req := requestNext(d, s.update.partNo)
			req.Broadcasted = false
			s.startTask(now, req)
		}
		return
	}
	if s.Flash != nil {
		s.onFlashData(now, d)
		return
	}
	if d.PartNo == 0 {
		s.buf.Reset()
	}
	s.buf.Write(d.Bytes())
	if d.PartNo == d.NoPart-1 {
		if s.task != nil {
			s.task.forget = false // setOnDisable(NULL)
			s.stopTask(s.task)
		}
		if md5hex(s.buf.Bytes()) == d.MD5 {
			s.Installed = d.MD5
			s.Image = bytes.Clone(s.buf.Bytes())
			s.Done = now
		}
		s.update.md5 = ""
		s.update.partNo = 0
		return
	}
	s.requestMore(now, d)
}

// requestMore asks for the chunk after d (ota.hpp's "else request more").
func (s *Receiver) requestMore(now time.Time, d *protocol.Data) {
	s.update.partNo++
	if s.task != nil {
		s.restartTask(now, s.task, requestNext(d, s.update.partNo))
	}
}

// onFlashData is the C++ handling of the in-sequence chunk d on a Flash:
// Update.begin at part 0, Update.write, and at the last part
// Update.end(true), ota_fn and the restart 2 s later. A failed write or
// check forgets the transfer; a good one keeps its md5 and part number
// until the restart, as the C++ does.
func (s *Receiver) onFlashData(now time.Time, d *protocol.Data) {
	f := s.Flash
	if d.PartNo == 0 {
		f.abort()
		if err := f.begin(d.MD5); err != nil {
			f.abort() // "OTA start failed": the write below fails
		}
	}
	if err := f.write(d.Bytes()); err != nil {
		f.abort()
		s.update.md5, s.update.partNo = "", 0
		return
	}
	if d.PartNo != d.NoPart-1 {
		s.requestMore(now, d)
		return
	}
	if err := f.end(); err == nil {
		_ = f.writeFile(d.MD5) // a failed file write: endless update loops, as the C++ logs
		s.Image, s.Done = f.Image(f.Boot), now
		if s.Reboot != nil {
			s.rebootAt = now.Add(2 * time.Second)
		}
	} else {
		s.update.md5, s.update.partNo = "", 0
	}
	if s.task != nil {
		s.task.forget = false // setOnDisable(NULL)
		s.stopTask(s.task)
	}
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// Tick implements mesh.Plugin.
func (s *Receiver) Tick(now time.Time) {
	if !s.rebootAt.IsZero() && !now.Before(s.rebootAt) {
		s.rebootAt = time.Time{}
		s.Reboot(now)
		return
	}
	s.runTasks(now)
}

// NextDeadline implements mesh.Plugin.
func (s *Receiver) NextDeadline() time.Time {
	next := s.rebootAt
	for _, t := range s.running {
		if next.IsZero() || t.next.Before(next) {
			next = t.next
		}
	}
	return next
}

// Waiting describes what the receiver waits for, in the C++ receiver's
// terms: the transfer it follows (updateFW), and whether a request task
// runs.
func (s *Receiver) Waiting() string {
	switch {
	case s.update.md5 == "":
		return "no transfer: waits for an announce"
	case len(s.running) > 0:
		return fmt.Sprintf("asks for part %d of %.8s", s.update.partNo, s.update.md5)
	case s.update.broadcasted:
		return fmt.Sprintf("waits for broadcast part %d of %.8s, asking nobody (Q-19 b)", s.update.partNo, s.update.md5)
	}
	return fmt.Sprintf("follows %.8s at part %d, no request task runs", s.update.md5, s.update.partNo)
}
