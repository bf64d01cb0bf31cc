package ota

import (
	"strings"
	"testing"
	"time"
)

// A campaign's role follows the same rule as a stored image's
// (firmware.ValidateRole), whoever starts it.
func TestDistributorStartRefusesInvalidRole(t *testing.T) {
	d := NewDistributor(DistributorConfig{})
	for _, role := range []string{"my_sensor", "sensor.v2", "a/b", ""} {
		_, err := d.Start(time.Unix(0, 0), CampaignSpec{Image: Image{Role: role, Hardware: "ESP32", Version: "1", Data: []byte("image")}})
		if err == nil || !strings.Contains(err.Error(), "role") {
			t.Errorf("role %q: error %v, want the role refused", role, err)
		}
	}
}
