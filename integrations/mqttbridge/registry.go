package mqttbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// The device registry over MQTT: requests on <prefix>/registry/control,
// answers on <prefix>/registry/control/response, as for ota/control.
const (
	TopicRegistryControl  = "registry/control"
	TopicRegistryResponse = "registry/control/response"
)

// RegistryRequest is a message on <prefix>/registry/control. Like a
// control request it may carry a correlation_id (and MQTT 5 correlation
// data and a response topic at or below registry/control/response).
type RegistryRequest struct {
	CorrelationID string    `json:"correlation_id,omitempty"`
	Action        string    `json:"action"` // set, forget, firmware
	NodeID        uint32    `json:"node_id"`
	Name          *string   `json:"name,omitempty"`
	Tags          *[]string `json:"tags,omitempty"`
	Notes         *string   `json:"notes,omitempty"`
	Force         bool      `json:"force,omitempty"`
}

// registryAudit names the state-changing registry actions in the audit log.
var registryAudit = map[string]string{"set": "node.update", "forget": "node.forget"}

const registryActions = "set, forget, firmware"

func (b *Bridge) handleRegistry(ctx context.Context, m Message) {
	var req RegistryRequest
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.DisallowUnknownFields()
	from := b.sender(m)
	resp := ControlResponse{Mesh: b.meshID()}
	if err := dec.Decode(&req); err != nil {
		var id struct {
			CorrelationID string `json:"correlation_id"`
			Action        string `json:"action"`
		}
		json.Unmarshal(m.Payload, &id)
		resp.CorrelationID, resp.Action = id.CorrelationID, id.Action
		if resp.Action == "" {
			resp.Action = "unknown"
		}
		resp.Error = fmt.Sprintf("request is not a valid registry document: %v", err)
		if b.checkReplyTopic(m, from, b.topic(TopicRegistryResponse)) != nil {
			m.ResponseTopic = "" // as for a valid request: only to a reply topic
		}
	} else {
		resp.CorrelationID, resp.Action = req.CorrelationID, req.Action
		var data any
		err := b.checkReplyTopic(m, from, b.topic(TopicRegistryResponse))
		if err != nil {
			b.log.Warn("registry request refused", "action", req.Action, "response_topic", m.ResponseTopic, "who", from.who(b.cfg.TrustSender), "err", err)
			m.ResponseTopic = ""
		} else {
			data, err = b.registry(ctx, req)
		}
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK, resp.Data = true, data
		}
		if action, ok := registryAudit[req.Action]; ok {
			target := fmt.Sprintf("node %d", req.NodeID)
			if req.Action == "forget" && req.Force {
				target += " forced"
			}
			fleet.Audit(b.log, fleet.AuditAction{Via: "mqtt", Who: from.who(b.cfg.TrustSender), Client: from.ClientID, Action: action, Target: target, Err: err})
		}
	}
	payload, err := marshal(resp)
	if err != nil {
		b.log.Error("registry response", "err", err)
		return
	}
	if err := b.c.Reply(ctx, m, b.topic(TopicRegistryResponse), payload); err != nil {
		b.log.Warn("registry response not sent", "err", err)
	}
}

func (b *Bridge) registry(ctx context.Context, req RegistryRequest) (any, error) {
	switch req.Action {
	case "":
		return nil, errors.New("missing \"action\": one of " + registryActions)
	case "set", "forget", "firmware":
	default:
		return nil, fmt.Errorf("unknown action %q: one of %s", req.Action, registryActions)
	}
	if req.NodeID == 0 {
		return nil, fmt.Errorf("%s needs \"node_id\" (a node id, 1..4294967295)", req.Action)
	}
	switch req.Action {
	case "set":
		n, err := b.svc.UpdateNode(ctx, req.NodeID, fleet.NodePatch{Name: req.Name, Tags: req.Tags, Notes: req.Notes})
		if err != nil {
			return nil, err
		}
		return n, nil
	case "forget":
		if err := b.svc.ForgetNode(ctx, req.NodeID, req.Force); err != nil {
			return nil, err
		}
		if b.cfg.PerNode {
			// Its retained document goes with it (an empty retained
			// message clears it).
			b.clearNode(ctx, req.NodeID)
		}
		return map[string]uint32{"forgotten": req.NodeID}, nil
	}
	return b.svc.NodeFirmware(ctx, req.NodeID)
}

// checkReplyTopic allows MQTT 5 response topics only at or below
// base (a whole topic), and, with the embedded broker, only those the
// requester may read.
func (b *Bridge) checkReplyTopic(m Message, from Sender, base string) error {
	rt := m.ResponseTopic
	if rt == "" {
		return nil
	}
	if (rt != base && !strings.HasPrefix(rt, base+"/")) || strings.ContainsAny(rt, "+#") {
		return fmt.Errorf("response topic %q refused: replies go only to %s or a topic below it", rt, base)
	}
	if b.cfg.MayRead != nil && !b.cfg.MayRead(from.User, rt) {
		return fmt.Errorf("response topic %q refused: you may not read it", rt)
	}
	return nil
}

// clearForgotten clears the retained per-node documents of nodes no
// longer listed (forgotten over REST, say): a retained document would
// outlive its node for good.
func (b *Bridge) clearForgotten(ctx context.Context, nodes []fleet.Node) {
	now := make(map[uint32]bool, len(nodes))
	for _, n := range nodes {
		now[n.ID] = true
	}
	b.mu.Lock()
	var gone []uint32
	for nid := range b.perNode {
		if !now[nid] {
			gone = append(gone, nid)
		}
	}
	b.perNode = now
	b.mu.Unlock()
	for _, nid := range gone {
		b.clearNode(ctx, nid)
	}
}

// clearNode removes a forgotten node's retained state: its document and,
// with Home Assistant, its availability, update state and discovery
// configs (an empty retained config removes the entities from Home
// Assistant).
func (b *Bridge) clearNode(ctx context.Context, nid uint32) {
	b.publish(ctx, b.topic(TopicNode+id(nid)), nil, true)
	if b.cfg.HomeAssistant {
		b.forgetHA(ctx, nid)
	}
}
