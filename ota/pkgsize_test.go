package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

// A chunk size whose packages an ESP8266 relay could not forward is
// refused with the sizes named; the automatic one always fits.
func TestChunkPackagesFitMaxPackageSize(t *testing.T) {
	for _, c := range []struct {
		dcfg DistributorConfig
		mode Mode
		want string
	}{
		{DistributorConfig{ChunkSize: 8192}, ModeBroadcast, "ota: campaign c: chunk size 8192 makes chunk packages of up to 10207 bytes, above the package limit of 8192"},
		{DistributorConfig{StockChunkSize: 6144}, ModeStock, "ota: campaign c: stock chunk size 6144 makes Data packages of up to 8428 bytes, above the package limit of 8192"},
	} {
		r := newRig(t, rigOpts{n: 1, model: sim.ESP8266(), seed: 1, dcfg: c.dcfg})
		var err error
		r.distND.Step(func(now time.Time, _ sim.Machine) {
			_, err = r.dist.Start(now, CampaignSpec{ID: "c", Image: sensorImage(1), Mode: c.mode})
		})
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: error %v, want %s", c.dcfg, err, c.want)
		}
	}
	for cs := 512; cs <= 8192; cs *= 2 {
		if n := maxChunkPackage(cs, EncDense); cs <= 4096 && n > 8192 || cs == 8192 && n <= 8192 {
			t.Errorf("chunk size %d: %d-byte packages", cs, n)
		}
	}
	r := newRig(t, rigOpts{n: 1, model: sim.ESP8266(), seed: 1})
	var c *Campaign
	r.distND.Step(func(now time.Time, _ sim.Machine) {
		c, _ = r.dist.Start(now, CampaignSpec{ID: "c", Image: sensorImage(1), Mode: ModeBroadcast})
	})
	if got := r.dist.find(c.ID).offer.ChunkSize; got != 4096 {
		t.Errorf("automatic chunk size with one child: %d, want 4096 (8192 makes 10 KB packages)", got)
	}
}
