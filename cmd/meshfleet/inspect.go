package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/capture"
)

func init() { rootCmd.AddCommand(newInspectCmd()) }

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE...",
		Short: "Decode capture files and check that every message re-encodes identically",
		Long: `Decode every message of one or more capture files: JSONL as written by
'meshfleet tap', the raw format with "#<conn> <dir> <t> <count>" headers, or a
plain NUL-framed byte stream (detected automatically). For each file print the
number of messages, how many decode, how many re-encode to the identical bytes,
counts per package type, and every problem found.

With --json print one JSON object instead, with the totals over all files
(messages, decoded, roundtrip_identical, by_type, errors) and the same for each
file under "files". The exit status is non-zero only when a file cannot be read.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.OutOrStdout(), args, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// inspectResult is one file's report, or the totals, as --json prints it.
type inspectResult struct {
	Path               string      `json:"path,omitempty"`
	Records            int         `json:"records"`
	Events             int         `json:"events"`
	Messages           int         `json:"messages"`
	Decoded            int         `json:"decoded"`
	Typed              int         `json:"typed"`
	Unknown            int         `json:"unknown"`
	RoundtripIdentical int         `json:"roundtrip_identical"`
	ByType             map[int]int `json:"by_type"`
	Wrapped            map[int]int `json:"wrapped"`
	Errors             []string    `json:"errors"`
}

type inspectOutput struct {
	inspectResult
	Files []inspectResult `json:"files"`
}

func (r *inspectResult) add(o inspectResult) {
	r.Records += o.Records
	r.Events += o.Events
	r.Messages += o.Messages
	r.Decoded += o.Decoded
	r.Typed += o.Typed
	r.Unknown += o.Unknown
	r.RoundtripIdentical += o.RoundtripIdentical
	for k, v := range o.ByType {
		r.ByType[k] += v
	}
	for k, v := range o.Wrapped {
		r.Wrapped[k] += v
	}
	for _, e := range o.Errors {
		r.Errors = append(r.Errors, o.Path+": "+e)
	}
}

// runInspect reads every file first, so that an unreadable file fails the
// command before anything is printed.
func runInspect(w io.Writer, paths []string, asJSON bool) error {
	out := inspectOutput{inspectResult: inspectResult{ByType: map[int]int{}, Wrapped: map[int]int{}, Errors: []string{}}}
	for _, path := range paths {
		recs, err := capture.ReadFile(path)
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		rep := capture.Inspect(recs)
		res := inspectResult{
			Path: path, Records: rep.Records, Events: rep.Events, Messages: rep.Messages,
			Decoded: rep.Decoded, Typed: rep.Typed, Unknown: rep.Unknown,
			RoundtripIdentical: rep.RoundtripIdentical,
			ByType:             rep.ByType, Wrapped: rep.Wrapped, Errors: rep.Errors,
		}
		if res.Errors == nil {
			res.Errors = []string{}
		}
		out.Files = append(out.Files, res)
		out.add(res)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	for _, f := range out.Files {
		printInspect(w, f.Path, f)
	}
	if len(out.Files) > 1 {
		printInspect(w, "total", out.inspectResult)
	}
	return nil
}

func printInspect(w io.Writer, name string, r inspectResult) {
	fmt.Fprintf(w, "%s: %d messages, %d decoded (%d unknown type), %d of %d typed re-encode identically, %d events\n",
		name, r.Messages, r.Decoded, r.Unknown, r.RoundtripIdentical, r.Typed, r.Events)
	for _, typ := range slices.Sorted(maps.Keys(r.ByType)) {
		fmt.Fprintf(w, "  type %4d: %d\n", typ, r.ByType[typ])
	}
	for _, typ := range slices.Sorted(maps.Keys(r.Wrapped)) {
		fmt.Fprintf(w, "  wrapped type %4d: %d\n", typ, r.Wrapped[typ])
	}
	if len(r.Errors) > 0 && name != "total" {
		fmt.Fprintf(w, "  %d problems:\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
}
