package sampler

import "fmt"

// mt19937 is the 32-bit Mersenne Twister behind torch's CPU generator: torch.Generator's
// manual_seed(s) seeds it exactly as std::mt19937(s) does (the low 32 bits of s).
type mt19937 struct {
	state [624]uint32
	i     int
}

func newMT19937(seed uint64) *mt19937 {
	m := &mt19937{i: 624}
	m.state[0] = uint32(seed)
	for k := 1; k < 624; k++ {
		prev := m.state[k-1]
		m.state[k] = 1812433253*(prev^prev>>30) + uint32(k)
	}
	return m
}

// next is one 32-bit output (std::mt19937::operator()).
func (m *mt19937) next() uint32 {
	const upper, lower = 0x80000000, 0x7fffffff
	if m.i >= 624 {
		for k := 0; k < 624; k++ {
			y := m.state[k]&upper | m.state[(k+1)%624]&lower
			v := m.state[(k+397)%624] ^ y>>1
			if y&1 != 0 {
				v ^= 0x9908b0df
			}
			m.state[k] = v
		}
		m.i = 0
	}
	y := m.state[m.i]
	m.i++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}

// Randperm is torch.randperm(n, generator=g) after g.manual_seed(seed) on the CPU: the
// forward Fisher–Yates shuffle of 0…n−1 in which step i swaps r[i] with r[i + u % (n−i)],
// u one 32-bit draw (torch 1.13; later releases keep this sequence for n below 2³²/20 and
// draw differently above, so larger n is refused).
func Randperm(n int, seed uint64) []int {
	if n < 0 || uint64(n) >= (1<<32)/20 {
		panic(fmt.Sprintf("sampler.Randperm: n = %d outside [0, 2³²/20)", n)) // Cyclic checks first
	}
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	g := newMT19937(seed)
	for i := 0; i < n-1; i++ {
		z := int(uint64(g.next()) % uint64(n-i))
		r[i], r[i+z] = r[i+z], r[i]
	}
	return r
}
