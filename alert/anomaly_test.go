package alert

import (
	"math"
	"testing"
)

func TestEWMA(t *testing.T) {
	var e EWMA
	e.Update(math.NaN(), 0.5)
	if e.N != 0 {
		t.Fatal("NaN counted")
	}
	e.Update(10, 0.5)
	e.Update(20, 0.5)
	// mean 10 + 0.5·10 = 15; var (1−0.5)(0 + 10·5) = 25.
	if e.Mean != 15 || e.Var != 25 || e.N != 2 {
		t.Fatalf("%+v", e)
	}
	b := band{K: 2, Floor: 1, Warmup: 2, Dir: upward}
	if out, _ := b.outside(&e, 24); out { // 9 ≤ 2·5
		t.Fatal("24 outside")
	}
	if out, d := b.outside(&e, 26); !out || d != 11 {
		t.Fatal("26 inside")
	}
	if out, _ := b.outside(&e, 0); out {
		t.Fatal("upward band flagged a low value")
	}
	b.Dir = eitherWay
	if out, _ := b.outside(&e, 0); !out {
		t.Fatal("two-sided band missed a low value")
	}
	b.Warmup = 3
	if out, _ := b.outside(&e, 100); out {
		t.Fatal("judged before warm-up")
	}
}
