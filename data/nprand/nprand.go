// Package nprand reproduces numpy's legacy numpy.random.RandomState bit for bit for the calls
// Megatron-LM's data pipeline makes: MT19937 seeded from an integer, shuffle, permutation,
// randint and random_sample.
//
// Seeding: RandomState(seed) with an integer seed in [0, 2**32) calls numpy's
// _legacy_seeding, which for an int uses mt19937_seed = Matsumoto–Nishimura init_genrand:
//
//	key[0] = seed;  key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >> 30)) + i   (mod 2**32)
//
// (init_by_array is used only when the seed is an array or sequence). The state position starts
// at 624, so the first draw regenerates the whole key with the standard twist.
package nprand

import (
	"fmt"
	"math"
	"math/bits"
)

const (
	n         = 624
	m         = 397
	matrixA   = 0x9908b0df
	upperMask = 0x80000000
	lowerMask = 0x7fffffff
)

// RandomState is numpy's legacy MT19937 generator. It is not safe for concurrent use.
type RandomState struct {
	key [n]uint32
	pos int
}

// New returns the generator of numpy.random.RandomState(seed).
func New(seed uint32) *RandomState {
	r := &RandomState{}
	r.Seed(seed)
	return r
}

// NewChecked is New for a seed given as a signed integer, with numpy's range check
// ("Seed must be between 0 and 2**32 - 1").
func NewChecked(seed int64) (*RandomState, error) {
	if seed < 0 || seed > math.MaxUint32 {
		return nil, fmt.Errorf("nprand: seed %d must be between 0 and 2**32 - 1", seed)
	}
	return New(uint32(seed)), nil
}

// Seed re-seeds r exactly as RandomState.seed(seed) does (init_genrand).
func (r *RandomState) Seed(seed uint32) {
	r.key[0] = seed
	for i := 1; i < n; i++ {
		prev := r.key[i-1]
		r.key[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	r.pos = n
}

// State returns the MT19937 key and position as numpy.random.get_state() reports them
// ('MT19937', key, pos, has_gauss=0, cached_gaussian=0.0) while no Gaussian is cached.
func (r *RandomState) State() (key [n]uint32, pos int) { return r.key, r.pos }

// SetState restores a state from State or numpy's get_state().
func (r *RandomState) SetState(key [n]uint32, pos int) error {
	if pos < 0 || pos > n {
		return fmt.Errorf("nprand: state position %d out of [0, %d]", pos, n)
	}
	r.key, r.pos = key, pos
	return nil
}

// twist regenerates the 624-word key (mt19937_gen).
func (r *RandomState) twist() {
	k := &r.key
	var i int
	for i = 0; i < n-m; i++ {
		y := (k[i] & upperMask) | (k[i+1] & lowerMask)
		k[i] = k[i+m] ^ (y >> 1) ^ (-(y & 1) & matrixA)
	}
	for ; i < n-1; i++ {
		y := (k[i] & upperMask) | (k[i+1] & lowerMask)
		k[i] = k[i+m-n] ^ (y >> 1) ^ (-(y & 1) & matrixA)
	}
	y := (k[n-1] & upperMask) | (k[0] & lowerMask)
	k[n-1] = k[m-1] ^ (y >> 1) ^ (-(y & 1) & matrixA)
	r.pos = 0
}

// Uint32 is the next tempered 32-bit output (mt19937_next32).
func (r *RandomState) Uint32() uint32 {
	if r.pos == n {
		r.twist()
	}
	y := r.key[r.pos]
	r.pos++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// Uint64 is (first Uint32 << 32) | second Uint32 (mt19937_next64).
func (r *RandomState) Uint64() uint64 {
	hi := uint64(r.Uint32())
	return hi<<32 | uint64(r.Uint32())
}

// mask returns the smallest 2**k - 1 >= v.
func mask(v uint64) uint64 {
	v |= v >> 1
	v |= v >> 2
	v |= v >> 4
	v |= v >> 8
	v |= v >> 16
	v |= v >> 32
	return v
}

// RandomInterval returns a uniform integer in [0, max] by masked rejection (numpy's
// random_interval): 32-bit draws while max fits in 32 bits, else 64-bit draws.
func (r *RandomState) RandomInterval(max uint64) uint64 {
	if max == 0 {
		return 0
	}
	mk := mask(max)
	if max <= math.MaxUint32 {
		m32, max32 := uint32(mk), uint32(max)
		for {
			if v := r.Uint32() & m32; v <= max32 {
				return uint64(v)
			}
		}
	}
	for {
		if v := r.Uint64() & mk; v <= max {
			return v
		}
	}
}

// Shuffle permutes a in place exactly as RandomState.shuffle does for a 1-D array:
// for i = len-1 down to 1: j = random_interval(i); swap a[i], a[j]. The element type does not
// influence the permutation.
func Shuffle[T any](r *RandomState, a []T) {
	for i := len(a) - 1; i > 0; i-- {
		var j int
		if i <= math.MaxUint32 {
			j = int(r.interval32(uint32(i)))
		} else {
			j = int(r.RandomInterval(uint64(i)))
		}
		a[i], a[j] = a[j], a[i]
	}
}

// interval32 is RandomInterval for 0 < max <= 2**32-1 with the draw and tempering inlined:
// Shuffle spends its time here.
func (r *RandomState) interval32(max uint32) uint32 {
	mk := uint32(1)<<bits.Len32(max) - 1
	for {
		if r.pos >= n {
			r.twist()
		}
		y := r.key[r.pos]
		r.pos++
		y ^= y >> 11
		y ^= (y << 7) & 0x9d2c5680
		y ^= (y << 15) & 0xefc60000
		y ^= y >> 18
		if v := y & mk; v <= max {
			return v
		}
	}
}

// Permutation returns RandomState.permutation(n): a shuffled arange(n) (int64).
func (r *RandomState) Permutation(count int) []int64 {
	a := make([]int64, count)
	for i := range a {
		a[i] = int64(i)
	}
	Shuffle(r, a)
	return a
}

// Randint returns RandomState.randint(low, high) for the default int64 dtype: a uniform integer
// in [low, high) by masked rejection on rng = high-1-low, with no draw when rng == 0, 32-bit
// draws when rng fits in 32 bits (a full 32-bit range takes the raw draw) and 64-bit draws
// otherwise.
func (r *RandomState) Randint(low, high int64) (int64, error) {
	if low >= high {
		return 0, fmt.Errorf("nprand: randint: low >= high (%d >= %d)", low, high)
	}
	rng := uint64(high) - 1 - uint64(low)
	switch {
	case rng == 0:
		return low, nil
	case rng == math.MaxUint32:
		return low + int64(r.Uint32()), nil
	case rng < math.MaxUint32:
		return low + int64(r.interval32(uint32(rng))), nil
	case rng == math.MaxUint64:
		return low + int64(r.Uint64()), nil
	}
	mk := mask(rng)
	for {
		if v := r.Uint64() & mk; v <= rng {
			return low + int64(v), nil
		}
	}
}

// RandomSample returns RandomState.random_sample(): a 53-bit double in [0, 1) from two draws,
// (a*2**26 + b) / 2**53 with a = next32 >> 5, b = next32 >> 6.
func (r *RandomState) RandomSample() float64 {
	a := r.Uint32() >> 5
	b := r.Uint32() >> 6
	return (float64(a)*67108864.0 + float64(b)) / 9007199254740992.0
}
