package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

func TestModesInstallEverywhere(t *testing.T) {
	img := testImage(40_000, 7)
	for _, tc := range []struct {
		mode   Mode
		method string
		model  sim.Model
	}{
		{ModeStock, "none", sim.Ideal()},
		{ModeStock, "deflate", sim.Ideal()},
		{ModePipelined, "deflate", sim.ESP8266()},
		{ModeBroadcast, "deflate", sim.ESP8266()},
		{ModeBroadcast, "none", sim.ESP8266()},
	} {
		t.Run(string(tc.mode)+"/"+tc.method, func(t *testing.T) {
			r := newRig(t, rigOpts{n: 12, model: tc.model, seed: 3})
			c := r.start(CampaignSpec{ID: "c1", Image: Image{Role: "sensor", Hardware: "ESP32", Data: img}, Mode: tc.mode, Method: tc.method})
			if !r.runUntilInstalled(c.Image.MD5, 30*time.Minute) {
				t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
			}
			for id, st := range r.stores {
				if md5hex(st.Image()) != c.Image.MD5 {
					t.Fatalf("node %d runs an image with md5 %s", id, md5hex(st.Image()))
				}
			}
			t.Logf("%s/%s: %v, dist %+v", tc.mode, tc.method, r.net.Elapsed(), r.dist.Stats())
		})
	}
}
