package chaos

import (
	"testing"

	"github.com/meshfleet/meshfleet/ota"
)

// legacy is the mode and receiver set the first cases were found with,
// before stock-turbo and the stock receiver were drawn: pinned so that
// their seeds draw the plans they had.
var (
	legacyModes     = []ota.Mode{ota.ModePipelined, ota.ModeBroadcast, ota.ModeStock}
	legacyReceivers = []Receiver{OurReceiver}
)

// Each case replays a schedule that broke an invariant before the fix
// named, on a small mesh, and must now keep them all.
var regressions = []struct {
	name   string
	cfg    Config
	seed   uint64
	faults string
}{
	{
		// ota: a "confirmed" report lost on the way was never sent again,
		// so the distributor kept the node downloading for ever.
		name: "confirmed-report-lost",
		cfg:  Config{MinNodes: 20, MaxNodes: 20, Modes: []ota.Mode{ota.ModeBroadcast}},
		seed: 4, faults: "loss@0s:3:40s:50",
	},
	{
		// ota: a node whose power went while it verified restarted with
		// every chunk staged and waited for a chunk to start the check:
		// stuck downloading, its tick spinning.
		name: "restart-with-every-chunk-staged",
		cfg:  Config{MinNodes: 20, MaxNodes: 20, Modes: []ota.Mode{ota.ModeBroadcast}},
		seed: 2, faults: "crash-verify@0s:5:10s:1",
	},
	{
		// ota: a restarted distributor cut the resumed campaign into
		// chunks of another size; receivers kept the old cut and could
		// take none of the new chunks.
		name: "gateway-restart-new-cut",
		cfg:  Config{Modes: legacyModes, Receivers: legacyReceivers},
		seed: 15, faults: "gateway-restart@1m22.25s:0:27.742s:0",
	},
	{
		// ota: a neighbour offered the image of a campaign a newer one
		// had replaced, and a node on the newer image took it (a
		// downgrade), or left the newer transfer for it.
		name: "peer-offers-replaced-image",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: legacyModes, Receivers: legacyReceivers},
		seed: 171, faults: "newer-image@10.385s:0:0s:0,crash-verify@1m32.14s:3:16.819s:0",
	},
	{
		name: "peer-offers-replaced-image-after-completion",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: legacyModes, Receivers: legacyReceivers},
		seed: 183, faults: "newer-image@1m17.176s:0:0s:0",
	},
	{
		name: "peer-offers-replaced-image-gateway-restart",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: legacyModes, Receivers: legacyReceivers},
		seed: 203, faults: "newer-image@40.636s:0:0s:0,flap@54.04s:15:34.638s:6,gateway-restart@1m2.407s:0:5.663s:0",
	},
	{
		// ota: the power went after the image was verified into the
		// inactive slot and before the switch; the slot store then
		// answered every Begin with "already verified" and the receiver
		// failed for ever on the previous image.
		name: "verified-not-switched",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: legacyModes, Receivers: legacyReceivers},
		seed: 5, faults: "power-cut@9.228s:3:9.195s:28,crash-boot@1m9.103s:34:16.728s:0",
	},
	{
		// ota: a node's "confirmed" reports were lost on lossy hops while
		// the restarted distributor's campaign was open; the next one came
		// after the campaign ended, whose record never changed, so it said
		// "nothing" of a node running the image.
		name: "late-confirmed-after-the-end",
		cfg:  Config{Modes: legacyModes, Receivers: legacyReceivers},
		seed: 731, faults: "gateway-restart@4.385s:0:4.32s:0",
	},
	{
		name: "verified-not-switched-stock",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: legacyModes, Receivers: legacyReceivers},
		seed: 85, faults: "power-cut@37.458s:25:1.906s:29,flap@52.052s:7:38.514s:8",
	},
	{
		// ota: a stock receiver's earlier request task repeated its old
		// request after the node was served its last chunk; the
		// distributor took it back to downloading, stopped watching for
		// its reboot, and called the node, which ran the image, lost.
		name: "stock-stale-request-after-last-chunk",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 17, faults: "newer-image@1m47.607s:0:0s:0",
	},
	{
		// ota: a stock receiver installed while the gateway was down; the
		// resumed campaign carried it over as downloading and never
		// checked its silence again, so it stayed downloading for ever.
		name: "stock-installed-while-gateway-down",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 627, faults: "gateway-restart@16.177s:0:22.074s:0",
	},
	{
		// ota: a stock receiver between a good image and its restart
		// dropped the transfer on the last chunk's second copy, an
		// announce took it up again, and part 0's Update.begin erased the
		// partition otadata boots: the node restarted into v2, ota_fn
		// naming v3, and the distributor counted it installed. Announces
		// now wait until such restarts are over.
		name: "stock-turbo-announce-before-restart",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 449, faults: "link-drop@13.42s:29:0s:0,newer-image@56.368s:0:0s:0",
	},
	{
		// ota: a stock-turbo node cut off while the newer campaign began
		// came back after its last chunk flooded without having taken it
		// up; the probe's chunk alone said nothing to it, so it counted
		// installed. The probe now announces first.
		name: "stock-turbo-return-without-the-transfer",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 866, faults: "partition@1.263s:24:1m14.202s:0,relay-crash@2.791s:15:14.803s:0,newer-image@1m14.402s:0:0s:0,crash@1m20.371s:3:21.549s:1,relay-crash@1m40.565s:1:40.016s:0",
	},
	{
		// ota: the same, with the probe's announce held because other
		// nodes had just been sent the last chunk: the node stayed silent
		// and counted installed. Only a probe after an announce sent
		// since the node's return counts now.
		name: "stock-turbo-probe-announce-held",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 744, faults: "link-drop@33.979s:10:0s:0,crash@1m12.305s:32:21.001s:1,newer-image@1m51.07s:0:0s:0",
	},
	{
		// ota: a node of a role campaign whose every report was lost
		// (cut off by a relay's crash, then the 2% loss) was never in the
		// distributor's record, though its chunk requests had reached it;
		// the campaign settled without it, announced no more, and its
		// "confirmed" never went again. A request now puts a node with no
		// record in the campaign, which then waits for its outcome.
		name: "unreported-node-of-a-role-campaign",
		cfg:  Config{MinNodes: 10, MaxNodes: 50, Modes: []ota.Mode{ota.ModeBroadcast}},
		seed: 1146, faults: "crash-verify@6.763s:26:5.059s:5,relay-crash@9.503s:21:52.233s:0,link-drop@40.431s:10:0s:0,clock-jump@1m13.463s:25:4m33.544s:0,link-drop@1m39.367s:23:0s:0,partition@1m48.286s:3:18.551s:0",
	},
	{
		// ota: a node that rebooted into the newer image forgot which
		// image the distributor offers, and took a neighbour's offer of
		// the image that campaign replaced: a downgrade, after which the
		// two neighbours swapped images at every reboot. The first boot
		// of an offered image now counts as the distributor's offer.
		name: "peer-offers-replaced-image-after-reboot",
		cfg: Config{Modes: []ota.Mode{ota.ModePipelined, ota.ModeBroadcast, ota.ModeStock, ota.ModeStockTurbo},
			Receivers: []Receiver{OurReceiver, StockReceiver}},
		seed: 470, faults: "reconnect@2.364s:31:302ms:9125,power-cut@4.127s:0:28.178s:32,crash-switch@6.03s:27:7.447s:3,crash-boot@6.301s:129:6.037s:4,link-drop@7.42s:57:0s:0,crash-verify@7.754s:84:5.971s:4,crash@23.429s:7:2.288s:0,reconnect@43.576s:94:36.054s:10578,relay-crash@1m19.451s:82:16.798s:0,newer-image@1m24.422s:0:0s:0",
	},
	{
		// chaos: a gateway restart after the campaign ended left the
		// restarted distributor without its record (it resumes only the
		// active ones), and the check found no campaign; the gateway
		// keeps the records of finished campaigns.
		name: "gateway-restart-after-the-end",
		cfg:  Config{Modes: []ota.Mode{ota.ModeStock, ota.ModeStockTurbo}, Receivers: []Receiver{StockReceiver}},
		seed: 37, faults: "gateway-restart@4m27.94s:0:17.574s:0",
	},
}

func TestRegressionSchedules(t *testing.T) {
	for _, tc := range regressions {
		t.Run(tc.name, func(t *testing.T) {
			faults, err := ParseFaults(tc.faults)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tc.cfg.Replay(tc.seed, faults)
			res := Run(cfg, tc.seed)
			for _, v := range res.Violations {
				t.Errorf("%s", v)
			}
			if len(res.Injected) == 0 {
				t.Errorf("no fault of %s fired", tc.faults)
			}
			if res.Reachable == 0 || res.Completed != res.Reachable {
				t.Errorf("completed %d of %d reachable", res.Completed, res.Reachable)
			}
			if res.StockStuck+res.StockUnseen > 0 {
				t.Errorf("%d stock receivers stuck, %d unseen: %v", res.StockStuck, res.StockUnseen, res.StockWhy)
			}
			t.Logf("%s: %s; replay: %s", res.Plan, tc.faults, cfg.Command("meshfleet sim chaos"))
		})
	}
}
