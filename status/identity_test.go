package status

import (
	"strings"
	"testing"
	"time"
)

// A node's role and hardware travel in full reports and reach the model.
// Like the firmware strings they are learnt once per firmware: a node with
// the same firmware as one already asked is not asked again, and gets the
// strings from the model.
func TestCollectorLearnsRoleAndHardware(t *testing.T) {
	fm := newFakeMesh(t)
	col := NewCollector(CollectorConfig{}, fm.now)
	reporter := func() *Reporter {
		return NewReporter(ReporterConfig{Interval: 5 * time.Second, Providers: Providers{
			Firmware: func() (string, string) { return "2.0.0", "md5-2" },
			Identity: func() (string, string) { return "sensor", "ESP32" },
		}}, fm.now)
	}
	fm.add(rootID, true, col)
	fm.add(nodeA, false, reporter())
	fm.add(nodeB, false, reporter())
	fm.link(rootID, nodeA)
	fm.link(nodeA, nodeB)
	fm.run(epoch.Add(time.Minute))
	for _, id := range []uint32{nodeA, nodeB} {
		st, ok := col.Model().Node(id)
		if !ok {
			t.Fatalf("node %d not in the model", id)
		}
		if st.Metrics.Role != "sensor" || st.Metrics.Hardware != "ESP32" || st.Metrics.FirmwareVersion != "2.0.0" {
			t.Errorf("node %d: role %q hardware %q firmware %q", id, st.Metrics.Role, st.Metrics.Hardware, st.Metrics.FirmwareVersion)
		}
	}
}

// The keys are in full reports only when known, so reports of nodes
// without them are unchanged.
func TestStatusReportIdentityKeys(t *testing.T) {
	with := (&StatusReport{From: 2, Dest: 1, Metrics: Metrics{Role: "sensor", Hardware: "ESP32"}}).AppendJSON(nil)
	if !strings.Contains(string(with), `"role":"sensor","hw":"ESP32"`) {
		t.Fatalf("report %s", with)
	}
	without := (&StatusReport{From: 2, Dest: 1}).AppendJSON(nil)
	if strings.Contains(string(without), `"role"`) || strings.Contains(string(without), `"hw"`) {
		t.Fatalf("report %s", without)
	}
	p, err := Decode(with)
	if err != nil {
		t.Fatal(err)
	}
	if m := p.(*StatusReport).Metrics; m.Role != "sensor" || m.Hardware != "ESP32" {
		t.Fatalf("decoded %+v", m)
	}
}
