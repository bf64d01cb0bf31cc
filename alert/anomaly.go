package alert

import "math"

// EWMA is an exponentially weighted mean and variance (West's incremental
// form): each new value x moves the mean by Alpha·(x − mean) and the
// variance correspondingly. It is the baseline the anomaly rules compare a
// rate of change against.
type EWMA struct {
	Mean float64 `json:"mean"`
	Var  float64 `json:"var"`
	N    int     `json:"n"` // values seen
}

// Update adds x with smoothing factor alpha in (0, 1]. The first value
// sets the mean. Non-finite values are ignored.
func (e *EWMA) Update(x, alpha float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	if e.N == 0 {
		e.Mean, e.Var, e.N = x, 0, 1
		return
	}
	d := x - e.Mean
	incr := alpha * d
	e.Mean += incr
	e.Var = (1 - alpha) * (e.Var + d*incr)
	e.N++
}

// StdDev is the square root of the variance.
func (e *EWMA) StdDev() float64 { return math.Sqrt(e.Var) }

// direction is which deviations from the baseline count as anomalous.
type direction int8

// Directions.
const (
	eitherWay direction = 0
	upward    direction = 1  // only values above the band
	downward  direction = -1 // only values below the band
)

// band is a deviation band around an EWMA baseline: a value is outside it
// when it differs from the mean by more than max(K·σ, Floor) in the
// watched direction, once Warmup values have been seen.
type band struct {
	K      float64
	Floor  float64
	Warmup int
	Dir    direction
}

// outside reports whether x lies outside the band around e, and by how
// much (x − mean).
func (b band) outside(e *EWMA, x float64) (bool, float64) {
	d := x - e.Mean
	if e.N < b.Warmup || math.IsNaN(x) || math.IsInf(x, 0) {
		return false, d
	}
	lim := math.Max(b.K*e.StdDev(), b.Floor)
	switch b.Dir {
	case upward:
		return d > lim, d
	case downward:
		return -d > lim, d
	}
	return math.Abs(d) > lim, d
}
