package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/rollout"
	"github.com/spf13/cobra"
)

// rolloutClient talks to a gateway's REST API.
type rolloutClient struct {
	base  string
	token string
	http  *http.Client
}

// maxRolloutResponse bounds what the CLI reads of an answer.
const maxRolloutResponse = 16 << 20

var rolloutFlags struct {
	gateway, token string
	jsonOut        bool
	// start
	spec, id, image, waves, soak, policy, role, hardware, overlap, reason string
	nodes, tags, names                                                    []string
	approval, pause, force                                                bool
	// abort
	rollback bool
}

var rolloutCmd = &cobra.Command{
	Use:   "rollout",
	Short: "Start and steer progressive rollouts on a gateway (over its REST API)",
	Long: `Start and steer progressive rollouts on a running gateway over its REST API.

The gateway is --gateway (or MESHFLEET_GATEWAY, default http://127.0.0.1:8080);
the API token is --token (or MESHFLEET_TOKEN), the gateway's http.token.`,
}

func init() {
	f := rolloutCmd.PersistentFlags()
	f.StringVar(&rolloutFlags.gateway, "gateway", "", "the gateway's HTTP address (default $MESHFLEET_GATEWAY or http://127.0.0.1:8080)")
	f.StringVar(&rolloutFlags.token, "token", "", "the gateway's API token (default $MESHFLEET_TOKEN)")
	f.BoolVar(&rolloutFlags.jsonOut, "json", false, "print the gateway's JSON answer")

	start := &cobra.Command{
		Use:   "start",
		Short: "Start a rollout: from a JSON spec (--spec FILE, - for stdin) or from flags",
		Example: `  meshfleet rollout start --image 3f2a… --waves 5,25%,100% --soak 2m --policy rollback
  meshfleet rollout start --spec rollout.json`,
		Args: cobra.NoArgs,
		RunE: runRolloutStart,
	}
	sf := start.Flags()
	sf.StringVar(&rolloutFlags.spec, "spec", "", "a JSON rollout request (as POST /api/v1/rollouts takes); - reads stdin")
	sf.StringVar(&rolloutFlags.id, "id", "", "the rollout's id (default: made from the image)")
	sf.StringVar(&rolloutFlags.image, "image", "", "the image's id or md5 in the gateway's firmware store")
	sf.StringVar(&rolloutFlags.waves, "waves", "", `the waves: counts and percents, e.g. "5,25%,100%" (default: one wave)`)
	sf.StringVar(&rolloutFlags.soak, "soak", "", `how long each wave is watched after it confirmed, e.g. "2m"`)
	sf.StringVar(&rolloutFlags.policy, "policy", "", "what a stopped rollout does with updated nodes: stop or rollback")
	sf.StringVar(&rolloutFlags.role, "role", "", "target role (default: the image's)")
	sf.StringVar(&rolloutFlags.hardware, "hardware", "", "target hardware (default: the image's)")
	sf.StringVar(&rolloutFlags.overlap, "overlap", "", "when another rollout holds some of the nodes: wait or supersede")
	sf.StringVar(&rolloutFlags.reason, "reason", "", "why (recorded when it supersedes)")
	sf.StringSliceVar(&rolloutFlags.nodes, "nodes", nil, "target node ids")
	sf.StringSliceVar(&rolloutFlags.tags, "tags", nil, "target the nodes with any of these registry tags")
	sf.StringSliceVar(&rolloutFlags.names, "names", nil, "target the nodes with these registry names")
	sf.BoolVar(&rolloutFlags.approval, "approval", false, "wait for approve before each wave after the canary")
	sf.BoolVar(&rolloutFlags.pause, "pause", false, "pause before each wave after the canary (resume goes on)")
	sf.BoolVar(&rolloutFlags.force, "force", false, "install on nodes that run a newer version (downgrade)")

	status := &cobra.Command{
		Use:   "status [ID]",
		Short: "List the rollouts, or show one with its nodes",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newRolloutClient()
			if len(args) == 0 {
				var rs []fleet.Rollout
				body, err := c.do(cmd.Context(), "GET", "/api/v1/rollouts", nil, &rs)
				if err != nil || rolloutFlags.jsonOut {
					return printBody(cmd.OutOrStdout(), body, err)
				}
				for _, r := range rs {
					printRollout(cmd.OutOrStdout(), r, false)
				}
				return nil
			}
			return c.show(cmd, "GET", "/api/v1/rollouts/"+url.PathEscape(args[0]), nil)
		},
	}
	rolloutCmd.AddCommand(start, status)
	for _, action := range fleet.RolloutActions {
		c := &cobra.Command{
			Use:   action + " ID",
			Short: strings.ToUpper(action[:1]) + action[1:] + " a rollout",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var body []byte
				if action == "abort" {
					body, _ = json.Marshal(fleet.RolloutCommand{Reason: rolloutFlags.reason, Rollback: rolloutFlags.rollback})
				}
				return newRolloutClient().show(cmd, "POST", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/"+action, body)
			},
		}
		if action == "abort" {
			c.Flags().BoolVar(&rolloutFlags.rollback, "rollback", false, "roll the nodes it updated back to their previous image")
			c.Flags().StringVar(&rolloutFlags.reason, "reason", "", "why (recorded)")
		}
		rolloutCmd.AddCommand(c)
	}
	rootCmd.AddCommand(rolloutCmd)
}

func newRolloutClient() *rolloutClient {
	base := cmp.Or(rolloutFlags.gateway, os.Getenv("MESHFLEET_GATEWAY"), "http://127.0.0.1:8080")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &rolloutClient{base: strings.TrimRight(base, "/"), token: cmp.Or(rolloutFlags.token, os.Getenv("MESHFLEET_TOKEN")),
		http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends a request and decodes a 2xx answer into v; another answer is
// an error carrying the gateway's message.
func (c *rolloutClient) do(ctx context.Context, method, path string, body []byte, v any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRolloutResponse))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("%s %s: the answer is not a rollout: %w", method, path, err)
		}
	}
	return data, nil
}

// show sends a request whose answer is one rollout and prints it.
func (c *rolloutClient) show(cmd *cobra.Command, method, path string, body []byte) error {
	var r fleet.Rollout
	data, err := c.do(cmd.Context(), method, path, body, &r)
	if err != nil || rolloutFlags.jsonOut {
		return printBody(cmd.OutOrStdout(), data, err)
	}
	printRollout(cmd.OutOrStdout(), r, true)
	return nil
}

func printBody(w io.Writer, body []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", bytes.TrimSpace(body))
	return err
}

func printRollout(w io.Writer, r fleet.Rollout, nodes bool) {
	var counts []string
	for _, s := range slices.Sorted(mapKeys(r.Count)) {
		counts = append(counts, fmt.Sprintf("%s=%d", s, r.Count[s]))
	}
	line := fmt.Sprintf("%s\t%s\twave %d/%d\timage %s %s\t%s", r.ID, r.State, r.Wave+1, r.Waves, r.Spec.Image.Version, r.Spec.Image.MD5, strings.Join(counts, " "))
	if r.Reason != "" {
		line += "\t" + r.Reason
	}
	fmt.Fprintln(w, line)
	if nodes {
		for _, n := range r.Nodes {
			fmt.Fprintf(w, "  node %d\twave %d\t%s\t%s\n", n.ID, n.Wave+1, n.State, n.Reason)
		}
	}
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func runRolloutStart(cmd *cobra.Command, _ []string) error {
	var body []byte
	f := &rolloutFlags
	if f.spec != "" {
		if f.image != "" || f.waves != "" || f.soak != "" || f.policy != "" {
			return errors.New("rollout start: give --spec or the flags --image, --waves, --soak, --policy, not both")
		}
		var err error
		if f.spec == "-" {
			body, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
		} else {
			body, err = os.ReadFile(f.spec)
		}
		if err != nil {
			return fmt.Errorf("rollout start: --spec: %w", err)
		}
	} else {
		req, err := rolloutRequestFromFlags()
		if err != nil {
			return err
		}
		if body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	return newRolloutClient().show(cmd, "POST", "/api/v1/rollouts", body)
}

// rolloutRequestFromFlags builds the request the start flags describe.
func rolloutRequestFromFlags() (fleet.RolloutRequest, error) {
	f := &rolloutFlags
	if f.image == "" {
		return fleet.RolloutRequest{}, errors.New("rollout start: needs --image (its id or md5 in the gateway's firmware store) or --spec")
	}
	req := fleet.RolloutRequest{ID: f.id, Image: f.image, Force: f.force, Overlap: f.overlap, Reason: f.reason,
		Targets: fleet.RolloutTargets{Role: f.role, Hardware: f.hardware, Tags: f.tags, Names: f.names}}
	for _, s := range f.nodes {
		id, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
		if err != nil || id == 0 {
			return req, fmt.Errorf("rollout start: --nodes: %q is not a node id", s)
		}
		req.Targets.Nodes = append(req.Targets.Nodes, uint32(id))
	}
	if f.waves != "" {
		for _, w := range strings.Split(f.waves, ",") {
			w = strings.TrimSpace(w)
			if p, ok := strings.CutSuffix(w, "%"); ok {
				v, err := strconv.ParseFloat(p, 64)
				if err != nil {
					return req, fmt.Errorf("rollout start: --waves: %q is not a percent", w)
				}
				req.Plan.Waves = append(req.Plan.Waves, rollout.Wave{Percent: v})
				continue
			}
			n, err := strconv.Atoi(w)
			if err != nil {
				return req, fmt.Errorf("rollout start: --waves: %q is neither a count nor a percent like 25%%", w)
			}
			req.Plan.Waves = append(req.Plan.Waves, rollout.Wave{Count: n})
		}
	}
	if f.soak != "" {
		d, err := time.ParseDuration(f.soak)
		if err != nil {
			return req, fmt.Errorf("rollout start: --soak: %q: want a duration like 2m", f.soak)
		}
		req.Plan.Soak = d
	}
	req.Plan.Policy = rollout.Policy(f.policy)
	req.Plan.Approval, req.Plan.Pause = f.approval, f.pause
	return req, nil
}
