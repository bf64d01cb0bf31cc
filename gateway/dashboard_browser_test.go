package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
	"github.com/meshfleet/meshfleet/integrations/rest"
	"github.com/meshfleet/meshfleet/integrations/web"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

// docsScreenshots, when set, is a directory (docs/ of the repository)
// that receives the screenshots the README shows:
// go test ./gateway -run TestDashboardInBrowser -args -docs-screenshots=$PWD/docs
var docsScreenshots = flag.String("docs-screenshots", "", "also write the dashboard screenshots the README shows to this directory")

// readmeScreenshots are the pages the README shows.
var readmeScreenshots = map[string]bool{"map": true, "ota": true}

// chromium finds a Chromium or Chrome to drive; "" if there is none.
func chromium() string {
	if p := os.Getenv("MESHFLEET_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium for the test, with a fresh
// profile, and stops it at the end.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium()
	if path == "" {
		t.Skip("no chromium found (apt-get install chromium, or set MESHFLEET_CHROMIUM): the dashboard's browser tests do not run")
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	// The first run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// waitJS waits (bounded) until the expression is truthy in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(within))); err != nil {
		t.Fatalf("%s: %v (waited %v for %s)", what, err, within, expr)
	}
}

// clickJS clicks the element sel once it is there, found and clicked in
// one step in the page: the live tables are drawn anew on every update,
// so an element found first and clicked later may be gone by then.
func clickJS(t *testing.T, ctx context.Context, what, sel string) {
	t.Helper()
	waitJS(t, ctx, what, fmt.Sprintf(`document.querySelector(%q) !== null`, sel), 10*time.Second)
	evalJS[chromedp.Void](t, ctx, fmt.Sprintf(`document.querySelector(%q).click()`, sel))
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// screenshot keeps the page (PNG: quality 100) as a test artifact (go test -artifacts), and
// in the docs directory when asked to.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.ArtifactDir()}
	if *docsScreenshots != "" && readmeScreenshots[name] {
		dirs = append(dirs, *docsScreenshots)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "dashboard-"+name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stepUntilDownloading advances the held simulated mesh in small virtual
// steps until the gateway has a node of campaign downloading.
func stepUntilDownloading(t *testing.T, ctx context.Context, g *Gateway, sm *scenario.Live, campaign string) {
	t.Helper()
	for {
		c, err := g.Campaign(ctx, campaign)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range c.Nodes {
			if p.State == "downloading" {
				return
			}
		}
		if c.State != "running" {
			t.Fatalf("campaign %s is %s before any node downloads", campaign, c.State)
		}
		if err := sm.Realtime.Do(ctx, func(n *sim.Network) { n.Run(n.Now().Add(100 * time.Millisecond)) }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDashboardInBrowser drives the dashboard in headless Chromium
// against a gateway with a token on a simulated 100-node mesh: login,
// the map with every node, an alert within 2 s of the gateway raising it
// and its acknowledgement, an OTA campaign uploaded, started, paused,
// resumed and followed live to the end from the page, a node's history
// charts, its name and tags and firmware history, "update all outdated"
// for a tag one node at a time, forgetting a dead node, and the page
// behind a reverse proxy's path prefix.
func TestDashboardInBrowser(t *testing.T) {
	browser := newBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const devices = 100
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.HTTP.Token = "dashboard-token"
	g, sm, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: devices, Seed: 11, Speed: 10, Model: "esp32", Epoch: time.Now().UTC().Truncate(time.Second)}, nil)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second): // a bounded wait on the real run loop
		}
	})
	waitReady(t, ctx, g, done)
	events := g.Subscribe(ctx)
	waitOnline(t, ctx, g, devices+1)
	base := "http://" + g.HTTPAddr + "/"

	// Login: the page loads without the token, the data does not.
	browse(t, browser, "open the dashboard", chromedp.Navigate(base))
	waitJS(t, browser, "login form", `document.querySelector("#login-token") !== null`, 10*time.Second)
	if n := evalJS[int](t, browser, `document.querySelectorAll("#card-online").length`); n != 0 {
		t.Fatal("the overview shows before login")
	}
	browse(t, browser, "a wrong token", chromedp.SendKeys(chromedp.CSS("#login-token"), "wrong"), chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)))
	waitJS(t, browser, "wrong token refused", `(document.querySelector("#login-error")||{}).textContent.includes("not accepted")`, 10*time.Second)
	browse(t, browser, "log in", chromedp.SendKeys(chromedp.CSS("#login-token"), cfg.HTTP.Token), chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)))
	waitJS(t, browser, "overview with every node online", fmt.Sprintf(`(document.querySelector("#card-online .value")||{}).textContent === "%d / %d"`, devices+1, devices+1), 15*time.Second)
	waitJS(t, browser, "live event stream", `document.querySelector("#live").textContent === "live"`, 10*time.Second)
	if tok := evalJS[string](t, browser, `location.href`); strings.Contains(tok, cfg.HTTP.Token) {
		t.Fatalf("the token is in the URL %s", tok)
	}
	screenshot(t, browser, "overview")

	// The map draws the real layout: every node the gateway lists.
	browse(t, browser, "open the map", chromedp.Navigate(base+"#/map"))
	waitJS(t, browser, "map with every node", fmt.Sprintf(`document.querySelectorAll("#map-nodes .node").length === %d`, devices+1), 15*time.Second)
	screenshot(t, browser, "map")
	leaf := lastDevice(cfg, devices)
	browse(t, browser, "select a node on the map", chromedp.SetValue(chromedp.CSS("#map-search"), fmt.Sprint(leaf)),
		chromedp.SendKeys(chromedp.CSS("#map-search"), "\r"))
	waitJS(t, browser, "route to the root highlighted", `document.querySelectorAll("#map-edges .edge.route").length >= 1 && document.querySelector("#map-info").textContent.includes("→ 1")`, 5*time.Second)
	screenshot(t, browser, "map-route")

	// The nodes table lists them all.
	browse(t, browser, "open the nodes table", chromedp.Navigate(base+"#/nodes"))
	waitJS(t, browser, "nodes table", fmt.Sprintf(`document.querySelectorAll("#nodes-table tbody tr").length === %d`, devices+1), 10*time.Second)
	screenshot(t, browser, "nodes")
	// Sorted by free memory, descending on the second click; filtered by text.
	browse(t, browser, "sort by free memory", chromedp.Click(chromedp.CSS(`#nodes-table th[data-key=free_memory_bytes]`)),
		chromedp.Click(chromedp.CSS(`#nodes-table th[data-key=free_memory_bytes]`)))
	// Polled, not read once: the table is drawn at the next frame, and
	// the nodes' figures change with every report meanwhile.
	waitJS(t, browser, "the nodes table sorted by free memory, largest first", `(() => {
		const ids = Array.from(document.querySelectorAll("#nodes-table tbody tr")).map(r => Number(r.dataset.id));
		const mem = ids.map(id => state.nodes.get(id).free_memory_bytes || 0);
		return mem.every((m, i) => i === 0 || mem[i-1] >= m) && mem[0] > mem[mem.length-1];
	})()`, 10*time.Second)
	browse(t, browser, "filter", chromedp.SendKeys(chromedp.CSS("#nodes-filter"), fmt.Sprint(lastDevice(cfg, devices))))
	waitJS(t, browser, "one node left", `document.querySelectorAll("#nodes-table tbody tr").length === 1`, 5*time.Second)

	// An alert raised in the mesh shows within 2 s of the gateway raising it.
	browse(t, browser, "open the alerts", chromedp.Navigate(base+"#/alerts"))
	waitJS(t, browser, "alerts page", `document.querySelector("#alerts-active") !== null && document.querySelector("#live").textContent === "live"`, 10*time.Second)
	victim := lastDevice(cfg, devices) - 1
	crashDevice(t, ctx, sm, victim)
	raised := waitAlert(t, ctx, events, victim, "node_offline")
	sel := fmt.Sprintf(`tr[data-alert=%q]`, raised.ID)
	waitJS(t, browser, "the alert in the page within 2 s", fmt.Sprintf(`document.querySelector(%q) !== null`, "#alerts-active "+sel), 2*time.Second)
	browse(t, browser, "name the operator", chromedp.SetValue(chromedp.CSS("#operator"), "alice"))
	clickJS(t, browser, "acknowledge it", "#alerts-active "+sel+" button.ack")
	waitJS(t, browser, "acknowledged in the page", fmt.Sprintf(`document.querySelector(%q).textContent.includes("alice")`, "#alerts-active "+sel), 5*time.Second)
	if as, err := g.Alerts(ctx, false); err != nil || !slices.ContainsFunc(as, func(a fleet.Alert) bool { return a.ID == raised.ID && strings.HasPrefix(a.AckedBy, "alice") }) {
		t.Fatalf("the gateway has the alerts %+v (%v), want %s acknowledged by alice", as, err, raised.ID)
	}
	screenshot(t, browser, "alerts")

	// OTA from the page: upload, start, follow it live to the end.
	img := compress.FirmwareLike(256<<10, 3)
	imgPath := filepath.Join(t.TempDir(), "sensor-2.0.0.bin")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	browse(t, browser, "open firmware and OTA", chromedp.Navigate(base+"#/ota"))
	waitJS(t, browser, "upload form", `document.querySelector("#upload-form") !== null`, 10*time.Second)
	browse(t, browser, "upload an image",
		chromedp.SetUploadFiles(chromedp.CSS("#up-file"), []string{imgPath}),
		chromedp.SetValue(chromedp.CSS("#up-version"), "2.0.0"),
		chromedp.Click(chromedp.CSS(`#upload-form button[type=submit]`)))
	waitJS(t, browser, "the image offered for a campaign", `document.querySelectorAll("#st-image option").length === 1`, 10*time.Second)
	// The page can show a transfer under way only while one is, and a page
	// slowed down by a loaded machine may first draw the table after every
	// download ended (the mesh's clock catches up with the wall clock in a
	// burst after a stall). So the mesh's clock is held while the page
	// starts the campaign, stepped until a node downloads, and the campaign
	// paused there: the nodes keep that state until it resumes.
	if err := sm.Realtime.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	browse(t, browser, "start a campaign",
		chromedp.SetValue(chromedp.CSS("#st-mode"), "broadcast"),
		chromedp.SetValue(chromedp.CSS("#st-compress"), "deflate"),
		chromedp.Click(chromedp.CSS("#st-start")))
	waitJS(t, browser, "the campaign running in the page", `document.querySelector("#campaigns tr[data-campaign]") !== null`, 10*time.Second)
	campaign := evalJS[string](t, browser, `document.querySelector("#campaigns tr[data-campaign]").dataset.campaign`)
	row := fmt.Sprintf(`#campaigns tr[data-campaign=%q]`, campaign)
	otaStart := time.Now()
	stepUntilDownloading(t, ctx, g, sm, campaign)
	if _, err := g.PauseCampaign(ctx, campaign); err != nil {
		t.Fatalf("pause on the gateway: %v", err)
	}
	if err := sm.Realtime.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The page hears of a pause made elsewhere by one event, which the
	// stream drops for a page too slow to take it (a slow client loses the
	// oldest events); loaded again, it reads the campaign as it is.
	browse(t, browser, "load the page again", chromedp.Reload())
	waitJS(t, browser, "paused in the page", fmt.Sprintf(`(document.querySelector(%q)||{dataset:{}}).dataset.state === "paused"`, row), 15*time.Second)
	// Watch the per-node table from the page's side: it must show
	// transfers under way, and later the nodes confirmed.
	evalJS[chromedp.Void](t, browser, `window.seenStates = new Set();
		const seePills = () => document.querySelectorAll("#campaign-nodes-table .pill").forEach(p => seenStates.add(p.textContent));
		seePills();
		new MutationObserver(seePills).observe(document.querySelector("#main"), {childList: true, subtree: true});`)
	waitJS(t, browser, "nodes downloading in the page", `seenStates.has("downloading")`, 30*time.Second)
	clickJS(t, browser, "resume", row+` button[data-act=resume]`)
	waitJS(t, browser, "running again in the page", fmt.Sprintf(`document.querySelector(%q).dataset.state !== "paused"`, row), 10*time.Second)
	// Pause and resume from the page.
	clickJS(t, browser, "pause", row+` button[data-act=pause]`)
	waitJS(t, browser, "paused in the page", fmt.Sprintf(`document.querySelector(%q).dataset.state === "paused"`, row), 10*time.Second)
	clickJS(t, browser, "resume", row+` button[data-act=resume]`)
	waitJS(t, browser, "running again in the page", fmt.Sprintf(`document.querySelector(%q).dataset.state !== "paused"`, row), 10*time.Second)
	alive := devices - 1 // the victim is down
	waitJS(t, browser, "the campaign completed in the page", fmt.Sprintf(`(() => { const r = document.querySelector(%q);
		return r && r.dataset.state === "completed" && Number(r.dataset.completed) >= %d; })()`, row, alive), 120*time.Second)
	t.Logf("OTA of a %d KiB image to %d nodes from the page: %v", len(img)>>10, alive, time.Since(otaStart).Round(time.Second/10))
	seen := evalJS[[]string](t, browser, `Array.from(seenStates)`)
	if !slices.Contains(seen, "downloading") || !slices.Contains(seen, "confirmed") {
		t.Fatalf("the page showed the node states %v during the campaign, want downloading and then confirmed", seen)
	}
	c, err := g.Campaign(ctx, campaign)
	if err != nil || c.Completed < alive {
		t.Fatalf("the gateway has the campaign as %+v (%v)", c, err)
	}
	screenshot(t, browser, "ota")

	// A node's page: its history charts have data points. The history
	// writes in batches: what the node reported so far is written first.
	if err := g.hist.store.Load().Sync(ctx); err != nil {
		t.Fatalf("history: %v", err)
	}
	browse(t, browser, "open a node", chromedp.Navigate(base+fmt.Sprintf("#/node/%d", leaf)))
	waitJS(t, browser, "node page", `document.querySelector("#node-facts dl") !== null`, 10*time.Second)
	for _, m := range []string{"free_memory_bytes", "latency_ms", "messages_rx", "health"} {
		waitJS(t, browser, m+" chart with data points", fmt.Sprintf(`Number(document.querySelector('svg.chart[data-metric=%q]').dataset.points) > 0 &&
			document.querySelector('svg.chart[data-metric=%q] polyline') !== null`, m, m), 10*time.Second)
	}
	waitJS(t, browser, "the node's update history", fmt.Sprintf(`document.querySelector("#node-updates").textContent.includes(%q)`, campaign), 10*time.Second)
	// The registry from the node page: a name and tags; the firmware history.
	browse(t, browser, "name and tag the node", chromedp.SetValue(chromedp.CSS("#reg-name"), "Pump house"),
		chromedp.SetValue(chromedp.CSS("#reg-tags"), "east, well"), chromedp.Click(chromedp.CSS(`#node-reg button[type=submit]`)))
	waitJS(t, browser, "the name in the page", fmt.Sprintf(`document.querySelector("#node-title").textContent.includes("Pump house (%d)")`, leaf), 10*time.Second)
	if n, err := g.Node(ctx, leaf); err != nil || n.Name != "Pump house" || !slices.Equal(n.Tags, []string{"east", "well"}) {
		t.Fatalf("the gateway has the node as %+v (%v)", n, err)
	}
	browse(t, browser, "reload the node page", chromedp.Reload())
	waitJS(t, browser, "the firmware history", `["1.0.0", "2.0.0"].every(v => (document.querySelector("#node-updates")?.textContent ?? "").includes(v))`, 10*time.Second)
	screenshot(t, browser, "node")

	// The map finds it by name.
	browse(t, browser, "open the map", chromedp.Navigate(base+"#/map"))
	waitJS(t, browser, "map", fmt.Sprintf(`document.querySelectorAll("#map-nodes .node").length === %d`, devices+1), 15*time.Second)
	browse(t, browser, "search by name", chromedp.SendKeys(chromedp.CSS("#map-search"), "pump\r"))
	waitJS(t, browser, "found by name", fmt.Sprintf(`(document.querySelector("#map-nodes .node.selected")||{dataset:{}}).dataset.id === "%d"`, leaf), 5*time.Second)

	// "Update all outdated nodes" of a tag, one at a time, from the page:
	// two more nodes get the tag over REST, as a script would.
	for _, id := range []uint32{leaf - 2, leaf - 3} {
		req, _ := http.NewRequestWithContext(ctx, "PATCH", fmt.Sprintf("%sapi/v1/nodes/%d", base, id), strings.NewReader(`{"tags":["east"]}`))
		req.Header.Set("Authorization", "Bearer "+cfg.HTTP.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PATCH node %d: %d", id, resp.StatusCode)
		}
	}
	img2 := filepath.Join(t.TempDir(), "sensor-2.1.0.bin")
	if err := os.WriteFile(img2, compress.FirmwareLike(32<<10, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	browse(t, browser, "open firmware and OTA", chromedp.Navigate(base+"#/ota"))
	waitJS(t, browser, "upload form", `document.querySelector("#upload-form") !== null`, 10*time.Second)
	browse(t, browser, "upload 2.1.0",
		chromedp.SetUploadFiles(chromedp.CSS("#up-file"), []string{img2}),
		chromedp.SetValue(chromedp.CSS("#up-version"), "2.1.0"),
		chromedp.Click(chromedp.CSS(`#upload-form button[type=submit]`)))
	waitJS(t, browser, "2.1.0 chosen for a campaign", `document.querySelectorAll("#st-image option").length === 2 && document.querySelector("#st-image").selectedOptions[0].textContent.includes("2.1.0")`, 10*time.Second)
	browse(t, browser, "update the outdated nodes tagged east",
		chromedp.SetValue(chromedp.CSS("#st-tags"), "east"), chromedp.SetValue(chromedp.CSS("#st-max"), "1"),
		chromedp.Click(chromedp.CSS("#st-outdated")))
	waitJS(t, browser, "the campaign in the page", fmt.Sprintf(`document.querySelectorAll("#campaigns tr[data-campaign]").length === 2 && document.querySelector("#campaigns tr[data-campaign]").dataset.campaign !== %q`, campaign), 10*time.Second)
	outdated := evalJS[string](t, browser, `document.querySelector("#campaigns tr[data-campaign]").dataset.campaign`)
	waitJS(t, browser, "one at a time in the page", `document.querySelector("#campaign-nodes-title").textContent.includes("at most 1 at once")`, 10*time.Second)
	waitJS(t, browser, "the outdated nodes updated", fmt.Sprintf(`(() => { const r = document.querySelector('#campaigns tr[data-campaign=%q]');
		return r && r.dataset.state === "completed" && r.dataset.completed === "3"; })()`, outdated), 90*time.Second)
	if c, err := g.Campaign(ctx, outdated); err != nil || c.Total != 3 || c.MaxConcurrent != 1 || c.Completed != 3 {
		t.Fatalf("the gateway has the campaign as %+v (%v), want 3 nodes one at a time", c, err)
	}

	// Forget the dead node from its page.
	browse(t, browser, "open the dead node", chromedp.Navigate(base+fmt.Sprintf("#/node/%d", victim)))
	waitJS(t, browser, "its page", `document.querySelector("#node-forget") !== null`, 10*time.Second)
	evalJS[chromedp.Void](t, browser, `window.confirm = () => true`)
	browse(t, browser, "forget it", chromedp.Click(chromedp.CSS("#node-forget")))
	waitJS(t, browser, "back on the nodes table", `location.hash === "#/nodes"`, 10*time.Second)
	if _, err := g.Node(ctx, victim); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("the forgotten node: %v, want not found", err)
	}

	// Behind a reverse proxy under a path prefix (another origin: the
	// token is asked for again).
	target, _ := url.Parse(base)
	proxy := httptest.NewServer(http.StripPrefix("/mesh", httputil.NewSingleHostReverseProxy(target)))
	defer func() { proxy.CloseClientConnections(); proxy.Close() }()
	browse(t, browser, "open the dashboard behind a proxy", chromedp.Navigate(proxy.URL+"/mesh/#/map"))
	waitJS(t, browser, "login behind the proxy", `document.querySelector("#login-token") !== null`, 10*time.Second)
	browse(t, browser, "log in behind the proxy", chromedp.SendKeys(chromedp.CSS("#login-token"), cfg.HTTP.Token),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)))
	listed, err := g.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitJS(t, browser, "map behind the proxy", fmt.Sprintf(`document.querySelectorAll("#map-nodes .node").length === %d && document.querySelector("#live").textContent === "live"`, len(listed)), 15*time.Second)
}

// TestDashboardMapLarge draws a 500-device layout (fan-out 4, five hops
// deep) from an in-memory fleet: every node is drawn, a search selects a
// deep node and highlights its whole route, and the wheel zooms. The time
// to draw is logged (-v), not asserted.
func TestDashboardMapLarge(t *testing.T) {
	browser := newBrowser(t)
	const devices = 500
	m := &fleettest.Memory{Sum: fleet.Summary{NodeCount: devices + 1, OnlineCount: devices + 1, HealthScore: 90}}
	trees := map[uint32]*protocol.NodeTree{1: {NodeID: 1, Root: true}}
	parent := map[uint32]uint32{}
	m.NodeList = append(m.NodeList, fleet.Node{ID: 1, Status: "online", Gateway: true, Health: 100, Firmware: "1.0.0"})
	for id := uint32(2); id <= devices+1; id++ {
		parent[id] = (id-2)/4 + 1
		trees[id] = &protocol.NodeTree{NodeID: id}
		m.NodeList = append(m.NodeList, fleet.Node{ID: id, Status: "online", Health: int(50 + id%50), Firmware: fmt.Sprintf("1.%d.0", id%3), Role: "sensor", Hardware: "ESP32"})
	}
	// Children are attached deepest first, so each subtree is complete when copied.
	for id := uint32(devices + 1); id >= 2; id-- {
		p := trees[parent[id]]
		p.Subs = append([]protocol.NodeTree{*trees[id]}, p.Subs...)
	}
	m.Tree = *trees[1]
	mux := http.NewServeMux()
	mux.Handle("/api/", rest.Handler(m, rest.Config{}))
	mux.Handle("/", web.Handler())
	srv := httptest.NewServer(mux)
	defer func() { srv.CloseClientConnections(); srv.Close() }()

	start := time.Now()
	browse(t, browser, "open the map", chromedp.Navigate(srv.URL+"/#/map"))
	waitJS(t, browser, "every node drawn", fmt.Sprintf(`document.querySelectorAll("#map-nodes .node").length === %d`, devices+1), 20*time.Second)
	t.Logf("map of %d nodes drawn %v after navigating", devices+1, time.Since(start).Round(time.Millisecond))
	deep := uint32(devices + 1)
	hops := 0
	for at := deep; at != 1; at = parent[at] {
		hops++
	}
	browse(t, browser, "find a deep node", chromedp.SetValue(chromedp.CSS("#map-search"), fmt.Sprint(deep)),
		chromedp.SendKeys(chromedp.CSS("#map-search"), "\r"))
	waitJS(t, browser, "its whole route highlighted", fmt.Sprintf(`document.querySelectorAll("#map-edges .edge.route").length === %d`, hops), 5*time.Second)
	before := evalJS[string](t, browser, `document.querySelector("#map-view").getAttribute("transform")`)
	evalJS[chromedp.Void](t, browser, `document.querySelector("#map-svg").dispatchEvent(new WheelEvent("wheel", {deltaY: -300, clientX: 300, clientY: 300, bubbles: true, cancelable: true}))`)
	if after := evalJS[string](t, browser, `document.querySelector("#map-view").getAttribute("transform")`); after == before {
		t.Fatalf("the wheel did not zoom: transform %q", after)
	}
	browse(t, browser, "colour by firmware", chromedp.SetValue(chromedp.CSS("#map-color"), "firmware"))
	evalJS[chromedp.Void](t, browser, `document.querySelector("#map-color").dispatchEvent(new Event("change"))`)
	if n := evalJS[int](t, browser, `new Set(Array.from(document.querySelectorAll("#map-nodes circle")).map(c => c.getAttribute("fill"))).size`); n != 3 {
		t.Fatalf("coloured by firmware the map has %d colours, want 3 (three versions)", n)
	}
}

// TestDashboardRollouts drives progressive rollouts from the OTA page: a
// rollout started from the form reaches the gateway with the plan the form
// describes and is aborted from the page; a rollout that waits for
// approval after its canary is shown so and approved from the page, and
// the page follows it to the end.
func TestDashboardRollouts(t *testing.T) {
	browser := newBrowser(t)
	const devices = 4
	ctx, g := startReadyGateway(t, devices)
	waitDevicesOnline(t, ctx, g, devices)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 32))
	base := "http://" + g.HTTPAddr + "/"

	browse(t, browser, "open firmware and OTA", chromedp.Navigate(base+"#/ota"))
	waitJS(t, browser, "the image offered for a rollout", `document.querySelectorAll("#ro-image option").length === 1`, 10*time.Second)
	waitJS(t, browser, "no rollouts yet", `document.querySelector("#rollouts").textContent.includes("No rollouts yet")`, 10*time.Second)
	browse(t, browser, "a wave that is neither a count nor a percent",
		chromedp.SetValue(chromedp.CSS("#ro-waves"), "1,half"), chromedp.Click(chromedp.CSS("#ro-start")))
	waitJS(t, browser, "the bad wave named", `!document.querySelector("#toast").hidden && document.querySelector("#toast").textContent.includes('"half"')`, 5*time.Second)
	if rs, err := g.ListRollouts(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("rollouts after a refused form: %+v (%v)", rs, err)
	}
	browse(t, browser, "start a rollout from the form",
		chromedp.SetValue(chromedp.CSS("#ro-waves"), "1,100%"), chromedp.SetValue(chromedp.CSS("#ro-soak"), "2s"),
		chromedp.Click(chromedp.CSS("#ro-approval")), chromedp.Click(chromedp.CSS("#ro-start")))
	waitJS(t, browser, "the rollout in the page", `document.querySelector("#rollouts-table tr[data-rollout]") !== null`, 10*time.Second)
	id := evalJS[string](t, browser, `document.querySelector("#rollouts-table tr[data-rollout]").dataset.rollout`)
	r, err := g.GetRollout(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Spec.Plan
	if len(p.Waves) != 2 || p.Waves[0].Count != 1 || p.Waves[1].Percent != 100 || p.Soak != 2*time.Second || !p.Approval || p.Policy != "stop" || r.Spec.Image.MD5 != img.MD5 {
		t.Fatalf("the gateway has the rollout as %+v, want waves 1 and 100%%, soak 2s, approval, policy stop", r.Spec)
	}
	evalJS[chromedp.Void](t, browser, `window.confirm = () => true`)
	row := fmt.Sprintf(`#rollouts-table tr[data-rollout=%q]`, id)
	clickJS(t, browser, "abort it", row+` button[data-act=abort]`)
	waitJS(t, browser, "aborted in the page", fmt.Sprintf(`document.querySelector(%q).dataset.state === "aborted"`, row), 10*time.Second)
	if r, err := g.GetRollout(ctx, id); err != nil || r.State != "aborted" {
		t.Fatalf("the gateway has the rollout as %s (%v), want aborted", r.State, err)
	}

	// Started by a script; approved from the page.
	w := watchRollouts(ctx, g)
	if code, _, body := startRolloutREST(t, g, `{"id":"gated","image":"`+img.ID+`","plan":{"waves":[{"count":1},{"percent":100}],"approval":true,"soak":"2s","gates":{"baseline_samples":1}}}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	w.waitState(t, ctx, "gated", "awaiting_approval")
	row = `#rollouts-table tr[data-rollout="gated"]`
	waitJS(t, browser, "awaiting approval in the page", fmt.Sprintf(`(document.querySelector(%q)||{dataset:{}}).dataset.state === "awaiting_approval"`, row), 10*time.Second)
	clickJS(t, browser, "approve the next wave", row+` button[data-act=approve]`)
	waitJS(t, browser, "completed in the page", fmt.Sprintf(`(document.querySelector(%q)||{dataset:{}}).dataset.state === "completed"`, row), 45*time.Second)
	if r, err := g.GetRollout(ctx, "gated"); err != nil || r.State != "completed" || r.Count["passed"]+r.Count["skipped"] != devices {
		t.Fatalf("the gateway has the rollout as %s %v (%v), want completed on every device", r.State, r.Count, err)
	}
	screenshot(t, browser, "rollouts")
}
