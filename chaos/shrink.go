package chaos

// Shrink finds a small fault schedule on which res's seed still breaks
// the same invariant: delta debugging (Zeller's ddmin) over the schedule,
// running the seed again with subsets of it, then one fault at a time
// taken out. It returns the schedule and how many runs it took. A failure
// that needs no fault at all shrinks to the empty schedule.
func Shrink(cfg Config, res Result) ([]Fault, int) {
	cfg.defaults()
	if !res.Failed() {
		return nil, 0
	}
	want := res.Violations[0].Invariant
	runs := 0
	fails := func(fs []Fault) bool {
		if runs >= cfg.ShrinkRuns {
			return false
		}
		runs++
		c := cfg.Replay(res.Plan.Seed, append([]Fault{}, fs...))
		r := Run(c, res.Plan.Seed)
		for _, v := range r.Violations {
			if v.Invariant == want {
				return true
			}
		}
		return false
	}
	cur := append([]Fault{}, res.Plan.Faults...)
	if fails(nil) {
		return []Fault{}, runs
	}
	n := 2
	for len(cur) >= 2 {
		chunk := (len(cur) + n - 1) / n
		reduced := false
		for start := 0; start < len(cur); start += chunk {
			end := min(start+chunk, len(cur))
			sub := cur[start:end]
			rest := append(append([]Fault{}, cur[:start]...), cur[end:]...)
			if fails(sub) {
				cur, n, reduced = append([]Fault{}, sub...), 2, true
				break
			}
			if n > 2 && fails(rest) {
				cur, n, reduced = rest, max(n-1, 2), true
				break
			}
		}
		if !reduced {
			if n >= len(cur) {
				break
			}
			n = min(2*n, len(cur))
		}
	}
	// One at a time, for what the halving left.
	for i := 0; i < len(cur) && len(cur) > 1; {
		rest := append(append([]Fault{}, cur[:i]...), cur[i+1:]...)
		if fails(rest) {
			cur = rest
			continue
		}
		i++
	}
	return cur, runs
}
