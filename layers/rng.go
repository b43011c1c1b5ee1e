package layers

import "math"

// splitMix is a small deterministic generator for weight initialisation (SplitMix64 with a
// Box–Muller normal), so a seed gives the same weights on every machine and backend.
type splitMix struct {
	s     uint64
	spare float64
	has   bool
}

func newSplitMix(seed uint64) *splitMix { return &splitMix{s: seed} }

func (r *splitMix) next() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// uniform returns a float64 in (0, 1).
func (r *splitMix) uniform() float64 { return (float64(r.next()>>11) + 0.5) / (1 << 53) }

func (r *splitMix) normal() float64 {
	if r.has {
		r.has = false
		return r.spare
	}
	u, v := r.uniform(), r.uniform()
	m := math.Sqrt(-2 * math.Log(u))
	r.spare, r.has = m*math.Sin(2*math.Pi*v), true
	return m * math.Cos(2*math.Pi*v)
}
