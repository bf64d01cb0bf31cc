package main

import (
	"context"
	"strings"
	"testing"
)

func TestBenchRolloutRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "1"}, "--nodes 1: want 2.."},
		{[]string{"--loss", "1.5"}, "--loss 1.5: want 0 ≤ P < 1"},
		{[]string{"--size", "0"}, "--size 0: want 1.."},
		{[]string{"--nodes", "12", "--scenarios", "chaos"}, `unknown scenario "chaos"`},
		{[]string{"--model", "esp9999"}, "esp9999"},
	} {
		_, _, err := execute(t, context.Background(), nil, append([]string{"bench", "rollout"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}

func TestBenchRolloutPrintsTheScenarioAndStragglers(t *testing.T) {
	out, _, err := execute(t, context.Background(), nil, "bench", "rollout", "--nodes", "12", "--scenarios", "bad-boot", "--stragglers", "2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bad-boot  failed", "0/12", "2 stragglers", "parent (slot)", "no (root)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
