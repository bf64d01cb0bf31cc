package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
)

// uploadREST stores img through POST /api/v1/firmware.
func uploadREST(t *testing.T, g *Gateway, role, hardware, version string, img []byte) fleet.Image {
	t.Helper()
	url := fmt.Sprintf("http://%s/api/v1/firmware?role=%s&hardware=%s&version=%s&md5=%s", g.HTTPAddr, role, hardware, version, md5Hex(img))
	code, body := call(t, "POST", url, "application/octet-stream", img)
	if code != http.StatusCreated {
		t.Fatalf("upload %s/%s %s: %d %s", role, hardware, version, code, body)
	}
	var im fleet.Image
	if err := json.Unmarshal([]byte(body), &im); err != nil {
		t.Fatal(err)
	}
	return im
}

// startREST starts a campaign through POST /api/v1/ota.
func startREST(t *testing.T, g *Gateway, req fleet.CampaignRequest) fleet.Campaign {
	t.Helper()
	data, _ := json.Marshal(req)
	code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota", "application/json", data)
	if code != http.StatusCreated {
		t.Fatalf("start %+v: %d %s", req, code, body)
	}
	var c fleet.Campaign
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func campaignsREST(t *testing.T, g *Gateway) map[string]fleet.Campaign {
	t.Helper()
	var cs []fleet.Campaign
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/ota", &cs)
	out := map[string]fleet.Campaign{}
	for _, c := range cs {
		out[c.ID] = c
	}
	return out
}

// TestGatewayRestartKeepsCampaignsAndAlerts stops a gateway with a
// completed, a running and a paused campaign and an active alert, and
// starts it again on the same state_dir: every campaign is listed, the
// running one with the per-node progress it had and served again, the
// paused one stays paused, and the alert is still active with its original
// raised_at.
func TestGatewayRestartKeepsCampaignsAndAlerts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	const devices = 4
	sc := scenario.LiveConfig{Nodes: devices, Seed: 3, Speed: 25, Model: "esp32", Epoch: time.Now().UTC().Truncate(time.Second)}
	runCtx, stop := context.WithCancel(ctx)
	g, sm, done := startSimGatewayWith(t, runCtx, cfg, sc, nil)
	waitReady(t, ctx, g, done)
	rec, _ := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(devices+1))

	first := cfg.Node.ID + 1000
	victim := lastDevice(cfg, devices) // crashed before the restart, absent after it
	imgA := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 21))
	imgB := uploadREST(t, g, "sensor", "ESP32", "2.1.0", compress.FirmwareLike(8<<10, 22))
	imgC := uploadREST(t, g, "sensor", "ESP8266", "2.0.0", compress.FirmwareLike(8<<10, 23))

	// Completed: one target, confirmed.
	done1 := startREST(t, g, fleet.CampaignRequest{Image: imgA.ID, Nodes: []uint32{first}, Mode: "broadcast"})
	rec.waitFor(t, ctx, "mf/ota/status", campaignIs(done1.ID, "completed"))
	// Running: a target that is not in the mesh keeps it offering the
	// image after the victim confirmed it.
	running := startREST(t, g, fleet.CampaignRequest{Image: imgB.ID, Mode: "broadcast", Nodes: []uint32{first, victim, 4242}})
	rec.waitFor(t, ctx, "mf/ota/status", nodeIs(running.ID, victim, "confirmed"))
	// Paused.
	paused := startREST(t, g, fleet.CampaignRequest{Image: imgC.ID})
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota/"+paused.ID+"/pause", "", nil); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	// An active alert.
	crashDevice(t, ctx, sm, victim)
	rec.waitFor(t, ctx, "mf/status/alerts", hasOfflineAlert(victim))
	before, ok := restAlert(t, g, victim)
	if !ok {
		t.Fatal("REST does not have the node_offline alert MQTT published")
	}
	want := campaignsREST(t, g)
	if len(want) != 3 || want[done1.ID].State != "completed" || want[running.ID].State != "running" || want[paused.ID].State != "paused" {
		t.Fatalf("campaigns before the restart: %+v", want)
	}
	// The clock moves on across the restart, as a real one does.
	sum, err := g.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := sum.Timestamp

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Again, on the same state_dir; the crashed device is gone for good.
	sc.Nodes, sc.Epoch = devices-1, last.Add(time.Second)
	g2, _, done2 := startSimGatewayWith(t, ctx, cfg, sc, nil)
	waitReady(t, ctx, g2, done2)
	rec2, _ := observe(t, ctx, brokerURL(g2), "observer")

	got := campaignsREST(t, g2)
	for id, w := range want {
		c, ok := got[id]
		if !ok {
			t.Fatalf("campaign %s (%s) not listed after the restart: %+v", id, w.State, got)
		}
		if c.State != w.State || c.Image.MD5 != w.Image.MD5 || c.Mode != w.Mode || !c.Started.Equal(w.Started) {
			t.Fatalf("campaign %s after the restart: %+v, before: %+v", id, c, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("after the restart %d campaigns, before %d", len(got), len(want))
	}
	if got[done1.ID].Completed != 1 {
		t.Fatalf("completed campaign lost its result: %+v", got[done1.ID])
	}
	// The running campaign keeps what its nodes reported before, until
	// they report again: the victim, gone from the mesh, never does.
	if p, w := got[running.ID].Nodes[fmt.Sprint(victim)], want[running.ID].Nodes[fmt.Sprint(victim)]; p.State != "confirmed" || !p.Updated.Equal(w.Updated) || p.Bytes != w.Bytes || p.Bytes == 0 {
		t.Fatalf("resumed campaign's progress of node %d: %+v, before the restart: %+v", victim, p, w)
	}
	key := fmt.Sprint(first)
	// It is served again: devices of the new mesh (which run the old
	// image again) report progress on it. (Polled on every MQTT message:
	// the first reports may predate the observer's subscription.)
	for {
		var c fleet.Campaign
		getJSON(t, "http://"+g2.HTTPAddr+"/api/v1/ota/"+running.ID, &c)
		if p := c.Nodes[key]; p.Updated.After(sc.Epoch) {
			break
		}
		select {
		case <-rec2.ch:
		case <-ctx.Done():
			t.Fatalf("resumed campaign is not served: %+v", c)
		}
	}

	// The alert is still active, raised when it was.
	after, _ := offlineAlert(rec2.waitFor(t, ctx, "mf/status/alerts", hasOfflineAlert(victim)), victim)
	if after.ID != before.ID || !after.Raised.Equal(before.Raised) {
		t.Fatalf("alert after the restart %+v, before %+v", after, before)
	}
	if a, ok := restAlert(t, g2, victim); !ok || !a.Raised.Equal(before.Raised) || a.State == "cleared" {
		t.Fatalf("REST alert after the restart %+v (found %v), before %+v", a, ok, before)
	}

	cancel()
	if err := <-done2; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// nodeIs matches an ota/status progress document of node in campaign id
// in state.
func nodeIs(id string, node uint32, state string) func([]byte) bool {
	return func(p []byte) bool {
		var pr fleet.Progress
		return json.Unmarshal(p, &pr) == nil && pr.Campaign == id && pr.NodeID == node && pr.State == state
	}
}

// TestGatewayRestartWithImageGone restarts a gateway whose running
// campaign's image was removed from the store meanwhile: the campaign is
// listed as failed, with the reason, across further restarts too; its
// status is served and pause, resume and abort answer 409 naming its state.
func TestGatewayRestartWithImageGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	runCtx, stop := context.WithCancel(ctx)
	g, _, done := startSimGateway(t, runCtx, cfg, 2)
	waitReady(t, ctx, g, done)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 41))
	c := startREST(t, g, fleet.CampaignRequest{Image: img.ID, Nodes: []uint32{4242}})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := g.store.Remove(img.ID); err != nil {
		t.Fatal(err)
	}

	reason := "image " + img.MD5 + " no longer in the firmware store"
	for run := range 2 {
		runCtx, stop := context.WithCancel(ctx)
		g, _, done := startSimGateway(t, runCtx, cfg, 2)
		waitReady(t, ctx, g, done)
		var got fleet.Campaign
		getJSON(t, "http://"+g.HTTPAddr+"/api/v1/ota/"+c.ID, &got)
		if got.State != "failed" || got.Reason != reason || got.Finished == nil {
			t.Fatalf("run %d: campaign with its image gone: %+v, want failed: %s", run, got, reason)
		}
		// An ended campaign keeps its image metadata, image or not.
		if !reflect.DeepEqual(got.Image, img) {
			t.Errorf("run %d: image of the failed campaign %+v, want %+v", run, got.Image, img)
		}
		if l := campaignsREST(t, g); l[c.ID].State != "failed" {
			t.Fatalf("run %d: listed as %+v", run, l[c.ID])
		}
		for _, action := range []string{"pause", "resume", "abort"} {
			code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota/"+c.ID+"/"+action, "", nil)
			if code != http.StatusConflict || !strings.Contains(body, "is failed") || !strings.Contains(body, reason) {
				t.Fatalf("run %d: %s: %d %s, want 409 naming the state and reason", run, action, code, body)
			}
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
}

// The campaign history keeps every active campaign and the last
// ota.keep_campaigns that ended, by when they ended.
func TestCampaignHistoryIsBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.OTA.KeepCampaigns = 2
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, st := range []ota.CampaignState{ota.CampaignCompleted, ota.CampaignRunning, ota.CampaignAborted, ota.CampaignFailed, ota.CampaignPaused, ota.CampaignSuperseded} {
		s := ota.CampaignSnapshot{ID: fmt.Sprint("c", i), State: st, Started: at.Add(time.Duration(i) * time.Minute)}
		if st != ota.CampaignRunning && st != ota.CampaignPaused {
			// Ended in the reverse order of their starts.
			s.Finished = at.Add(time.Hour - time.Duration(i)*time.Minute)
		}
		g.history[s.ID] = s
	}
	if err := g.saveState(); err != nil {
		t.Fatal(err)
	}
	g2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range sortedSnapshots(g2.history) {
		ids = append(ids, s.ID)
	}
	if want := "c0 c1 c2 c4"; strings.Join(ids, " ") != want {
		t.Fatalf("history %v, want %s", ids, want)
	}
}

// Campaign starts do not pin their image: after 40 starts of an 8 MiB
// image through the gateway, each superseded by the next or aborted, the
// heap holds at most one image more than before.
func TestGatewayCampaignStartsDoNotPinImages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := testConfig(t)
	g, _, done := startSimGateway(t, ctx, cfg, 2)
	waitReady(t, ctx, g, done)
	const size = 8 << 20
	// For a role no device has: the devices' own slot stores stay empty,
	// so the heap is the gateway's.
	img := uploadREST(t, g, "probe", "ESP32", "2.0.0", compress.FirmwareLike(size, 42))
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	var last fleet.Campaign
	for i := range 40 {
		// Uncompressed: compressing 8 MiB in the node's loop 40 times
		// would be slow under the race detector; what is kept is the same.
		c, err := g.StartCampaign(ctx, fleet.CampaignRequest{Image: img.ID, Nodes: []uint32{4242}, Mode: "pipelined", Compress: "none"})
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			if _, err := g.AbortCampaign(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		last = c
	}
	if c, err := g.Campaign(ctx, last.ID); err != nil || c.State != "aborted" {
		t.Fatalf("last campaign %+v (%v), want aborted", c, err)
	}
	after := heap()
	grown := int64(after) - int64(before)
	t.Logf("gateway heap after 40 campaign starts of a %d MiB image: %.1f MiB (grew %.1f MiB)", size>>20, float64(after)/(1<<20), float64(grown)/(1<<20))
	if limit := int64(size + 4<<20); grown > limit {
		t.Fatalf("heap grew by %d bytes over 40 ended campaigns, want at most one image plus 4 MiB (%d)", grown, limit)
	}
	states := map[string]int{}
	all, err := g.Campaigns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		states[c.State]++
	}
	if states["superseded"] != 36 || states["aborted"] != 4 {
		t.Fatalf("campaign states %v, want 36 superseded and 4 aborted", states)
	}
	cancel()
	<-done
}

// A campaign saved by a version that did not record its image, whose
// image is gone, still shows what the campaign itself knows of it.
func TestEndedCampaignViewWithoutImageRecord(t *testing.T) {
	g, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := ota.CampaignSnapshot{ID: "old", State: ota.CampaignFailed, Targets: ota.Targets{Role: "sensor", Hardware: "ESP32"},
		Image: ota.ImageInfo{MD5: "8d6771bc2d7d38c4746a83861c831ff6", Role: "sensor", Hardware: "ESP32", Version: "2.0.0", Size: 8192}}
	v := g.campaignView(s)
	if v.Image.Version != "2.0.0" || v.Image.Size != 8192 || v.Image.MD5 != s.Image.MD5 || v.Image.Role != "sensor" {
		t.Errorf("image %+v", v.Image)
	}
}
