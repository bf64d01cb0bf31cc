package mqttbridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// Home Assistant: per-node availability and an MQTT-discovery `update`
// entity per node, as Zigbee2MQTT offers its devices. The sensors' configs
// are in bridge.go (discover).
const (
	// TopicNodeAvailability is <prefix>/status/node/<id>/availability:
	// "online" or "offline", retained, as the node document's status.
	TopicNodeAvailability = "/availability"
	// TopicNodeUpdate is <prefix>/status/node/<id>/update: the update
	// entity's state (haUpdateState), retained.
	TopicNodeUpdate = "/update"
	// TopicOTAInstall is <prefix>/ota/install/<id>: the update entity's
	// command topic; the payload "install" starts a campaign of the newest
	// stored image of the node's role and hardware for that node.
	TopicOTAInstall   = "ota/install/"
	haPayloadInstall  = "install"
	haComponentUpdate = "update"
)

// haAvailability is one entry of a discovery config's availability list;
// with availability_mode "all" an entity is available only while the
// gateway (bridge/state) and the node itself are both online.
type haAvailability struct {
	Topic string `json:"topic"`
}

func (b *Bridge) haAvailabilityOf(node uint32) []haAvailability {
	return []haAvailability{{Topic: b.topic(TopicState)}, {Topic: b.topic(TopicNode + id(node) + TopicNodeAvailability)}}
}

// haUpdate is the discovery config of a node's firmware update entity.
type haUpdate struct {
	Name             string           `json:"name"`
	UniqueID         string           `json:"unique_id"`
	DeviceClass      string           `json:"device_class"`
	EntityCategory   string           `json:"entity_category"`
	StateTopic       string           `json:"state_topic"`
	CommandTopic     string           `json:"command_topic"`
	PayloadInstall   string           `json:"payload_install"`
	Availability     []haAvailability `json:"availability"`
	AvailabilityMode string           `json:"availability_mode"`
	Device           haDevice         `json:"device"`
}

// haUpdateState is what Home Assistant reads from the update entity's
// state topic (its JSON state schema). LatestVersion equals
// InstalledVersion when no newer image is stored, so no update is offered.
type haUpdateState struct {
	InstalledVersion *string  `json:"installed_version"`
	LatestVersion    *string  `json:"latest_version"`
	Title            string   `json:"title,omitempty"`
	InProgress       bool     `json:"in_progress"`
	UpdatePercentage *float64 `json:"update_percentage"` // null: none running
}

func (b *Bridge) discoverUpdate(ctx context.Context, n fleet.Node, dev haDevice) {
	uid := b.haID(n.ID) + "_firmware"
	b.publishJSON(ctx, b.cfg.HAPrefix+"/"+haComponentUpdate+"/"+uid+"/config", haUpdate{
		Name: "Firmware", UniqueID: uid, DeviceClass: "firmware", EntityCategory: "config",
		StateTopic: b.topic(TopicNode + id(n.ID) + TopicNodeUpdate), CommandTopic: b.topic(TopicOTAInstall + id(n.ID)),
		PayloadInstall: haPayloadInstall, Availability: b.haAvailabilityOf(n.ID), AvailabilityMode: "all", Device: dev,
	}, true)
}

// forgetHA removes a forgotten node from Home Assistant; should it come
// back, it is announced anew.
func (b *Bridge) forgetHA(ctx context.Context, node uint32) {
	b.mu.Lock()
	delete(b.announced, node)
	delete(b.haProgress, node)
	delete(b.haNodes, node)
	b.mu.Unlock()
	b.publish(ctx, b.topic(TopicNode+id(node)+TopicNodeAvailability), nil, true)
	b.publish(ctx, b.topic(TopicNode+id(node)+TopicNodeUpdate), nil, true)
	for _, s := range haSensors {
		b.publish(ctx, b.cfg.HAPrefix+"/"+haComponentSensor+"/"+b.haID(node)+"_"+s.key+"/config", nil, true)
	}
	b.publish(ctx, b.cfg.HAPrefix+"/"+haComponentUpdate+"/"+b.haID(node)+"_firmware/config", nil, true)
}

// publishHAState publishes n's availability and, when imgs is not nil
// (the store answered), its update entity's state.
func (b *Bridge) publishHAState(ctx context.Context, n fleet.Node, imgs []fleet.Image) {
	avail := availabilityOff
	if n.Status == "online" {
		avail = availabilityOn
	}
	b.publish(ctx, b.topic(TopicNode+id(n.ID)+TopicNodeAvailability), []byte(avail), true)
	if imgs == nil {
		return
	}
	st := updateState(n, imgs)
	b.mu.Lock()
	b.haProgress[n.ID] = progressKey(st)
	b.haNodes[n.ID] = n
	b.haImages = imgs
	b.mu.Unlock()
	b.publishJSON(ctx, b.topic(TopicNode+id(n.ID)+TopicNodeUpdate), st, true)
}

// publishHAProgress republishes a node's update state when its progress
// moved by a whole percent or changed state: progress events arrive per
// chunk, far more often than Home Assistant needs. It asks the service
// nothing: the node and the images are those of the latest status cycle,
// so a burst of progress events costs no round trips to the node loop.
func (b *Bridge) publishHAProgress(ctx context.Context, p fleet.Progress) {
	b.mu.Lock()
	n, known := b.haNodes[p.NodeID]
	imgs := b.haImages
	b.mu.Unlock()
	if !known || imgs == nil {
		return // not announced yet: the next status cycle publishes its state
	}
	n.OTA = &p
	st := updateState(n, imgs)
	key := progressKey(st)
	b.mu.Lock()
	same := b.haProgress[n.ID] == key
	b.haProgress[n.ID] = key
	b.mu.Unlock()
	if !same {
		b.publishJSON(ctx, b.topic(TopicNode+id(n.ID)+TopicNodeUpdate), st, true)
	}
}

func progressKey(st haUpdateState) string {
	pct := -1
	if st.UpdatePercentage != nil {
		pct = int(*st.UpdatePercentage)
	}
	return fmt.Sprintf("%t/%d/%v/%v", st.InProgress, pct, deref(st.InstalledVersion), deref(st.LatestVersion))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// updateState is n's update entity state against the stored images.
func updateState(n fleet.Node, imgs []fleet.Image) haUpdateState {
	var st haUpdateState
	if n.Firmware != "" {
		installed := n.Firmware
		st.InstalledVersion, st.LatestVersion = &installed, &installed
	}
	if img, ok := newestImage(imgs, n.Role, n.Hardware); ok {
		st.Title = img.Role + " firmware (" + img.Hardware + ")"
		latest := img.Version
		if !newerThanRunning(n, img) {
			// Running the newest image (whatever version string it
			// reports) or a newer one: nothing to offer.
			latest = deref(st.InstalledVersion)
		}
		if latest != "" {
			st.LatestVersion = &latest
		}
	}
	if p := n.OTA; p != nil && activeProgress(p.State) {
		st.InProgress = true
		if p.Total > 0 {
			pct := float64(p.Chunks) * 100 / float64(p.Total)
			pct = float64(int(pct*10)) / 10
			st.UpdatePercentage = &pct
		}
	}
	return st
}

// newerThanRunning: img is not what n runs, nor older than it. A node
// whose version is unknown is offered any image it does not run.
func newerThanRunning(n fleet.Node, img fleet.Image) bool {
	if n.FirmwareMD5 != "" && n.FirmwareMD5 == img.MD5 {
		return false
	}
	return n.Firmware == "" || compareVersions(img.Version, n.Firmware) > 0
}

// activeProgress: the node is still taking or installing an image.
func activeProgress(state string) bool {
	switch state {
	case "downloading", "verifying", "switching":
		return true
	}
	return false
}

// newestImage is the stored image for role and hardware with the highest
// version (compareVersions), the latest added among equal versions.
func newestImage(imgs []fleet.Image, role, hardware string) (fleet.Image, bool) {
	if role == "" || hardware == "" {
		return fleet.Image{}, false
	}
	var best fleet.Image
	found := false
	for _, img := range imgs {
		if img.Role != role || img.Hardware != hardware {
			continue
		}
		if c := compareVersions(img.Version, best.Version); !found || c > 0 || (c == 0 && img.Added.After(best.Added)) {
			best, found = img, true
		}
	}
	return best, found
}

// compareVersions orders version strings the way people number releases:
// runs of digits compare as numbers, anything else as text ("1.10.0" >
// "1.9.2", "v2" > "v1"). A leading "v" is ignored.
func compareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	for a != "" && b != "" {
		ra, restA := versionPart(a)
		rb, restB := versionPart(b)
		na, errA := strconv.ParseUint(ra, 10, 64)
		nb, errB := strconv.ParseUint(rb, 10, 64)
		switch {
		case errA == nil && errB == nil:
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
		case ra != rb:
			return strings.Compare(ra, rb)
		}
		a, b = restA, restB
	}
	return strings.Compare(a, b)
}

// versionPart splits off the leading run of digits, or of non-digits.
func versionPart(s string) (part, rest string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

// handleInstall takes Home Assistant's install command for one node:
// a campaign of the newest stored image of the node's role and hardware,
// for that node only, in the gateway's default mode.
func (b *Bridge) handleInstall(ctx context.Context, m Message) {
	from := b.sender(m)
	target := strings.TrimPrefix(m.Topic, b.topic(TopicOTAInstall))
	c, err := b.install(ctx, target, string(m.Payload))
	detail := "node " + target
	if err == nil {
		detail = "campaign " + c.ID + " of image " + c.Image.ID + " for node " + target
	}
	fleet.Audit(b.log, fleet.AuditAction{Via: "mqtt", Who: from.who(b.cfg.TrustSender), Client: from.ClientID, Action: "campaign.start", Target: detail, Err: err})
	if err != nil {
		b.log.Warn("home assistant install refused", "topic", m.Topic, "err", err)
	}
}

var errNoNewerImage = errors.New("no stored image is newer than what the node runs")

func (b *Bridge) install(ctx context.Context, target, payload string) (fleet.Campaign, error) {
	if payload != haPayloadInstall {
		return fleet.Campaign{}, fmt.Errorf("payload %q is not %q", payload, haPayloadInstall)
	}
	v, err := strconv.ParseUint(target, 10, 32)
	if err != nil || v == 0 {
		return fleet.Campaign{}, fmt.Errorf("%q is not a node id", target)
	}
	n, err := b.svc.Node(ctx, uint32(v))
	if err != nil {
		return fleet.Campaign{}, err
	}
	imgs, err := b.svc.Images(ctx)
	if err != nil {
		return fleet.Campaign{}, err
	}
	img, ok := newestImage(imgs, n.Role, n.Hardware)
	if !ok {
		return fleet.Campaign{}, fmt.Errorf("node %d (role %q, hardware %q): no stored image for it", n.ID, n.Role, n.Hardware)
	}
	if !newerThanRunning(n, img) {
		return fleet.Campaign{}, fmt.Errorf("node %d runs %q, stored newest %q: %w", n.ID, n.Firmware, img.Version, errNoNewerImage)
	}
	return b.svc.StartCampaign(ctx, fleet.CampaignRequest{Image: img.ID, Nodes: []uint32{n.ID}})
}
