package layers

import (
	"math"
	"runtime"
	"sync"
)

// Weight initialisation draws from SplitMix64 with a Box–Muller normal, so a seed gives the
// same weights on every machine and backend. SplitMix64 is counter-based (call c sees the
// state seed + c·γ), so any stretch of the stream can be computed on its own and large
// tensors are filled in parallel with the values a sequential generator would give.

const splitMixGamma = 0x9E3779B97F4A7C15

// splitMixAt is the c-th output (c ≥ 1) of SplitMix64 started at seed.
func splitMixAt(seed, c uint64) uint64 {
	z := seed + c*splitMixGamma
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// uniformAt maps the c-th output to a float64 in (0, 1).
func uniformAt(seed, c uint64) float64 { return (float64(splitMixAt(seed, c)>>11) + 0.5) / (1 << 53) }

// fillUniform sets v[i] = float32((2u_{i+1} − 1)·bound), uniform on (−bound, bound).
func fillUniform(v []float32, seed uint64, bound float64) {
	for i := range v {
		v[i] = float32((2*uniformAt(seed, uint64(i+1)) - 1) * bound)
	}
}

// fillNormal sets v[i] = float32(N_i·std) where N_0, N_1, … are the stream's normals:
// pair k takes outputs 2k+1 and 2k+2 as (u, w) and gives N_2k = r·cos 2πw, N_2k+1 = r·sin 2πw,
// r = sqrt(−2 ln u).
func fillNormal(v []float32, seed uint64, std float64) {
	pairs := (len(v) + 1) / 2
	fill := func(lo, hi int) {
		for k := lo; k < hi; k++ {
			u, w := uniformAt(seed, uint64(2*k+1)), uniformAt(seed, uint64(2*k+2))
			r := math.Sqrt(-2 * math.Log(u))
			v[2*k] = float32(r * math.Cos(2*math.Pi*w) * std)
			if 2*k+1 < len(v) {
				v[2*k+1] = float32(r * math.Sin(2*math.Pi*w) * std)
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), pairs/(1<<16))
	if workers <= 1 {
		fill(0, pairs)
		return
	}
	var wg sync.WaitGroup
	chunk := (pairs + workers - 1) / workers
	for lo := 0; lo < pairs; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fill(lo, hi)
		}(lo, min(lo+chunk, pairs))
	}
	wg.Wait()
}
