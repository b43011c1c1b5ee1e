package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestArenaBumpAndReuse(t *testing.T) {
	const base = 0x7f0000000000
	a, err := NewArena(base, 10*ArenaAlign+17)
	require.NoError(t, err)
	require.Equal(t, uintptr(10*ArenaAlign), a.Size(), "capacity rounds down to the alignment")

	p1, err := a.Alloc(1)
	require.NoError(t, err)
	p2, err := a.Alloc(ArenaAlign + 1)
	require.NoError(t, err)
	p3, err := a.Alloc(0)
	require.NoError(t, err)
	require.Equal(t, []uintptr{base, base + ArenaAlign, base + 3*ArenaAlign}, []uintptr{p1, p2, p3}, "bump order, 256-byte units")
	require.Equal(t, uintptr(4*ArenaAlign), a.InUse())

	require.NoError(t, a.Free(p2))
	p4, err := a.Alloc(2 * ArenaAlign)
	require.NoError(t, err)
	require.Equal(t, p2, p4, "first fit reuses the freed hole")

	_, err = a.Alloc(7 * ArenaAlign)
	require.ErrorContains(t, err, "out of memory")
	require.ErrorContains(t, err, "largest free span 1536")

	require.ErrorContains(t, a.Free(p2+ArenaAlign), "not a live allocation")
	require.ErrorContains(t, a.Free(base+100*ArenaAlign), "not in the arena")
	require.NoError(t, a.Free(p1))
	require.ErrorContains(t, a.Free(p1), "double free")
	require.Equal(t, uintptr(4*ArenaAlign), a.Peak())

	_, err = NewArena(base+8, 1024)
	require.ErrorContains(t, err, "aligned")
}

// TestArenaRandom checks against a simple model under random alloc/free: no two live
// allocations overlap, all lie inside the arena and are aligned, and after freeing
// everything the free list is one span again (neighbours were merged).
func TestArenaRandom(t *testing.T) {
	const base, size = 0x100000, 1 << 20
	a, err := NewArena(base, size)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(1, 2))
	live := map[uintptr]uintptr{}
	for it := 0; it < 5000; it++ {
		if len(live) > 0 && r.IntN(3) == 0 {
			for p := range live {
				require.NoError(t, a.Free(p))
				delete(live, p)
				break
			}
			continue
		}
		n := uintptr(r.IntN(20000))
		p, err := a.Alloc(n)
		if err != nil {
			continue
		}
		require.Zero(t, p%ArenaAlign)
		require.True(t, p >= base && p+n <= base+size)
		for q, m := range live {
			require.False(t, p < q+m && q < p+max(n, 1), "overlap %#x+%d with %#x+%d", p, n, q, m)
		}
		live[p] = max(n, 1)
	}
	for p := range live {
		require.NoError(t, a.Free(p))
	}
	require.Equal(t, []span{{0, size}}, a.free)
	require.Zero(t, a.InUse())
}
