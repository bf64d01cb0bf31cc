package gateway

import "testing"

// The gateway's default campaign mode may be stock-turbo.
func TestConfigAcceptsStockTurbo(t *testing.T) {
	p := writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n")
	cfg, err := LoadConfig(p, nil, []string{"ota.mode=stock-turbo"})
	if err != nil || cfg.OTA.Mode != "stock-turbo" {
		t.Fatalf("ota.mode=stock-turbo: %v, %q", err, cfg.OTA.Mode)
	}
}
