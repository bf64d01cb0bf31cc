package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/scenario"
)

// DemoConfig is `meshfleet demo`: a simulated mesh in real time, the
// gateway with its embedded broker, REST and metrics, and a compressed
// broadcast OTA across the mesh while status flows.
type DemoConfig struct {
	Nodes      int           // simulated devices (default 30)
	Duration   time.Duration // how long to run (0: until ctx ends)
	Seed       uint64
	Speed      float64 // virtual seconds per wall second (default 1)
	ImageSize  int     // firmware size in bytes (default 512 KiB)
	Mode       string  // OTA mode (default broadcast)
	Compress   string  // OTA compression (default deflate)
	MQTTListen string  // embedded broker (default 127.0.0.1:1883)
	HTTPListen string  // dashboard, REST and /metrics (default 127.0.0.1:8080)
	JSON       bool    // progress as JSON lines
	// StopWhenDone ends the demo once the OTA is confirmed everywhere.
	StopWhenDone bool
	Logger       *slog.Logger
}

// DemoResult is the demo's outcome.
type DemoResult struct {
	Nodes       int     `json:"nodes"`
	Online      int     `json:"online"`
	HealthScore int     `json:"health_score"`
	Campaign    string  `json:"campaign"`
	Completed   int     `json:"ota_completed"`
	Failed      int     `json:"ota_failed"`
	OTASeconds  float64 `json:"ota_seconds"` // wall seconds from start to the last confirmation; 0 if not finished
	MQTT        string  `json:"mqtt"`
	HTTP        string  `json:"http"`
	Dashboard   string  `json:"dashboard"`
}

// RunDemo runs the demo and writes where to look and a progress view to out.
func RunDemo(ctx context.Context, dc DemoConfig, out io.Writer) (DemoResult, error) {
	if dc.Nodes == 0 {
		dc.Nodes = 30
	}
	if dc.Speed == 0 {
		dc.Speed = 1
	}
	if dc.ImageSize == 0 {
		dc.ImageSize = 512 << 10
	}
	if dc.Mode == "" {
		dc.Mode = "broadcast"
	}
	if dc.Compress == "" {
		dc.Compress = "deflate"
	}
	if dc.MQTTListen == "" {
		dc.MQTTListen = "127.0.0.1:1883"
	}
	if dc.HTTPListen == "" {
		dc.HTTPListen = "127.0.0.1:8080"
	}
	if dc.Logger == nil {
		dc.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "meshfleet-demo-")
	if err != nil {
		return DemoResult{}, err
	}
	defer os.RemoveAll(dir)

	cfg := DefaultConfig()
	cfg.Node.ID = 1
	cfg.MQTT.Embedded.Listen = dc.MQTTListen
	cfg.MQTT.PublishInterval = Duration(5 * time.Second)
	cfg.MQTT.Topics.PerNode = true
	cfg.HTTP.Listen = dc.HTTPListen
	cfg.Firmware.Dir = filepath.Join(dir, "firmware")
	cfg.StateDir = filepath.Join(dir, "state")
	g, err := New(cfg, dc.Logger)
	if err != nil {
		return DemoResult{}, err
	}
	sm, err := g.NewSimMesh(scenario.LiveConfig{Nodes: dc.Nodes, Seed: dc.Seed, Speed: dc.Speed, Epoch: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return DemoResult{}, err
	}
	if dc.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dc.Duration)
		defer cancel()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	simCtx, simStop := context.WithCancel(context.Background())
	defer simStop()
	go sm.Realtime.Run(simCtx)
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(ctx, sm.Driver); simStop() }()
	select {
	case <-g.Ready():
	case err := <-runErr:
		if err == nil {
			err = ctx.Err()
		}
		return DemoResult{}, fmt.Errorf("gateway did not start: %w (choose other ports with --mqtt-listen / --http-listen)", err)
	}

	res := DemoResult{Nodes: dc.Nodes + 1, MQTT: "mqtt://" + g.MQTTAddr, HTTP: "http://" + g.HTTPAddr, Dashboard: "http://" + g.HTTPAddr + "/"}
	p := cfg.TopicRoot()
	if dc.JSON {
		line(out, map[string]any{"event": "started", "dashboard": res.Dashboard, "mqtt": res.MQTT, "http": res.HTTP, "nodes": res.Nodes,
			"topics": []string{p + "/status/#", p + "/ota/status", p + "/ota/announce", p + "/from/+"}})
	} else {
		fmt.Fprintf(out, "meshfleet demo: the dashboard is at %s (open it in a browser)\n", res.Dashboard)
		fmt.Fprintf(out, "%d simulated nodes (ESP32 link model) and a gateway, in real time.\n\n", dc.Nodes)
		fmt.Fprintf(out, "  MQTT broker   %s   (e.g. mosquitto_sub -h %s -p %s -t '%s/#' -v)\n", res.MQTT, hostOf(g.MQTTAddr), portOf(g.MQTTAddr), p)
		fmt.Fprintf(out, "  topics        %s/status/{nodes,topology,metrics,alerts,node/<id>}, %s/ota/{announce,status,control}, %s/from/<id>\n", p, p, p)
		fmt.Fprintf(out, "  REST          %s/api/v1/nodes   /topology   /alerts   /firmware   /ota\n", res.HTTP)
		fmt.Fprintf(out, "  Prometheus    %s/metrics\n\n", res.HTTP)
	}

	// Wait for the mesh to show up, then distribute firmware.
	start := time.Now()
	var campaign string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			err := <-runErr
			return res, err
		case <-tick.C:
		}
		sum, err := g.Summary(ctx)
		if err != nil {
			// The next tick asks again: a line of zeros would misreport the mesh.
			if ctx.Err() == nil {
				dc.Logger.Warn("demo progress skipped", "err", err)
			}
			continue
		}
		res.Online, res.HealthScore = sum.OnlineCount, sum.HealthScore
		if campaign == "" && sum.OnlineCount == res.Nodes {
			img := compress.FirmwareLike(dc.ImageSize, dc.Seed+1)
			im, _, err := g.AddImage(ctx, fleet.ImageUpload{Role: "sensor", Hardware: "ESP32", Version: "2.0.0"}, bytes.NewReader(img))
			if err != nil {
				return res, err
			}
			c, err := g.StartCampaign(ctx, fleet.CampaignRequest{Image: im.ID, Mode: dc.Mode, Compress: dc.Compress})
			if err != nil {
				return res, err
			}
			campaign, res.Campaign = c.ID, c.ID
			start = time.Now()
			if !dc.JSON {
				fmt.Fprintf(out, "all %d nodes online; OTA campaign %s: %d KiB image, %s, %s\n", res.Nodes, c.ID, dc.ImageSize>>10, dc.Mode, dc.Compress)
			}
		}
		var c fleet.Campaign
		if campaign != "" {
			if c, err = g.Campaign(ctx, campaign); err != nil {
				if ctx.Err() == nil {
					dc.Logger.Warn("demo progress skipped", "campaign", campaign, "err", err)
				}
				continue
			}
			res.Completed, res.Failed = c.Completed, c.Failed
			if res.OTASeconds == 0 && c.Completed == dc.Nodes {
				res.OTASeconds = time.Since(start).Seconds()
			}
		}
		elapsed := time.Since(start).Round(time.Second)
		if dc.JSON {
			line(out, map[string]any{"event": "progress", "online": sum.OnlineCount, "nodes": sum.NodeCount, "health": sum.HealthScore,
				"alerts": sum.ActiveAlerts, "campaign": campaign, "ota_completed": c.Completed, "ota_failed": c.Failed, "ota_nodes": c.Total})
		} else {
			fmt.Fprintf(out, "  online %d/%d  health %3d  alerts %d  %s\n", sum.OnlineCount, sum.NodeCount, sum.HealthScore, sum.ActiveAlerts, otaBar(c, dc.Nodes, elapsed))
		}
		if dc.StopWhenDone && res.OTASeconds > 0 {
			stop()
			return res, <-runErr
		}
	}
}

func otaBar(c fleet.Campaign, total int, elapsed time.Duration) string {
	if c.ID == "" {
		return "waiting for the mesh to form"
	}
	var chunks, of int
	for _, p := range c.Nodes {
		chunks += p.Chunks
		of += p.Total
	}
	pct := 0
	switch {
	case c.Completed == total:
		pct = 100
	case of > 0:
		pct = chunks * 100 / of
	}
	bar := strings.Repeat("#", pct/5) + strings.Repeat(".", 20-pct/5)
	return fmt.Sprintf("OTA [%s] %3d%%  confirmed %d/%d  failed %d  %s", bar, pct, c.Completed, total, c.Failed, elapsed)
}

func line(out io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(out, string(b))
}

func hostOf(addr string) string {
	h, _, _ := strings.Cut(addr, ":")
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		h = addr[:i]
	}
	return h
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
