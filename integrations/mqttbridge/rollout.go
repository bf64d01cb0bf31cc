package mqttbridge

import (
	"context"
	"fmt"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
)

// rolloutActionList names the rollout control actions, for error messages.
var rolloutActionList = "rollout_start, rollout_status, rollout_" + strings.Join(fleet.RolloutActions, ", rollout_")

func init() {
	// Every state-changing rollout action is audited.
	auditActions["rollout_start"] = "rollout.start"
	for _, a := range fleet.RolloutActions {
		auditActions["rollout_"+a] = "rollout." + a
	}
}

// rolloutControl runs the rollout actions of ota/control: rollout_start
// with "spec" (a rollout request, as POST /api/v1/rollouts takes),
// rollout_status with "rollout" (without: every rollout), and
// rollout_pause, _resume, _approve and _abort with "rollout" (abort takes
// "reason" and "rollback").
func (b *Bridge) rolloutControl(ctx context.Context, req ControlRequest) (any, error) {
	switch req.Action {
	case "rollout_start":
		if req.Spec == nil {
			return nil, fmt.Errorf("rollout_start needs \"spec\": a rollout request such as {\"image\": \"<id or md5>\", \"plan\": {\"waves\": [{\"count\": 1}, {\"percent\": 100}], \"soak\": \"2m\"}}")
		}
		return b.svc.StartRollout(ctx, *req.Spec)
	case "rollout_status":
		if req.Rollout == "" {
			return b.svc.ListRollouts(ctx)
		}
		return b.svc.GetRollout(ctx, req.Rollout)
	}
	action := strings.TrimPrefix(req.Action, "rollout_")
	for _, a := range fleet.RolloutActions {
		if a != action {
			continue
		}
		if req.Rollout == "" {
			return nil, fmt.Errorf("%s needs \"rollout\" (a rollout id)", req.Action)
		}
		return b.svc.ControlRollout(ctx, req.Rollout, fleet.RolloutCommand{Action: action, Reason: req.Reason, Rollback: req.Rollback})
	}
	return nil, fmt.Errorf("unknown action %q: the rollout actions are %s", req.Action, rolloutActionList)
}

func rolloutAuditTarget(req ControlRequest, data any) string {
	if r, ok := data.(fleet.Rollout); ok {
		return "rollout " + r.ID
	}
	if req.Spec != nil {
		return "rollout " + req.Spec.ID + " of image " + req.Spec.Image
	}
	return "rollout " + req.Rollout
}
