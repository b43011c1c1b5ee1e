package layers

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm/tcp"
)

// TestDropoutSegments: over every (CP, TP) rank of CP 2 × TP 3 with sequence parallelism
// (2 local rows per TP rank, so the middle rank straddles its CP rank's two chunks), the
// segments' counters cover each row of the whole sequence exactly once, at the row's
// global position: chunk c's rows hold global rows c·3 … c·3+2.
func TestDropoutSegments(t *testing.T) {
	const h, rows = 5, 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp, err := tcp.LocalWorld(ctx, 2, tcp.Options{Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer func() {
		for _, c := range cp {
			c.Close()
		}
	}()
	seen := map[uint64]int{}
	for r := range 2 {
		chunks := [2]int{r, 3 - r}
		for tpr := range 3 {
			p := Parallel{CP: cp[r], SequenceParallel: true, TPRank: tpr, TPSize: 3}
			segs, n := p.dropoutSegments(rows, h)
			for _, sg := range segs[:n] {
				for q := sg.lo; q < sg.hi; q++ {
					local := tpr*rows + q // among this CP rank's 6 rows: 3 per chunk
					global := chunks[local/3]*3 + local%3
					require.Equal(t, uint64(global*h), sg.off+uint64((q-sg.lo)*h), "cp %d tp %d row %d", r, tpr, q)
					seen[sg.off+uint64((q-sg.lo)*h)]++
				}
			}
		}
	}
	require.Len(t, seen, 12)
	for off, n := range seen {
		require.Equal(t, 1, n, "counter %d", off)
	}
}
