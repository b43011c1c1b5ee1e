package train

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProgressFirstStart: Megatron's get_start_time_from_progress_log — the cumulative
// throughput counts from the first job of the latest stretch at this world size, with the
// floating-point operations of the checkpoint saved before it; a job at another world size
// starts the search again.
func TestProgressFirstStart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "progress.txt")
	saved := func(w, flops string) string {
		return "2026-01-01 00:00:00\tJob ID: 7\t# GPUs: " + w + "\tSaved checkpoint\tIteration: 1\tJob throughput: 1.0 TFLOP/s/GPU\t" +
			"Cumulative throughput: 1.0 TFLOP/s/GPU\tFloating-point operations: " + flops + "\tTokens (in billions): 0.00\n"
	}
	require.NoError(t, os.WriteFile(p, []byte(
		"2026-01-01 10:00:00\tJob ID: 7\t# GPUs: 1\tStarting job\n"+saved("1", "5.00e+14")+
			"2026-01-01 11:00:00\tJob ID: 7\t# GPUs: 2\tStarting job\n"+saved("2", "1.00e+15")+
			"2026-01-01 12:00:00\tJob ID: 8\t# GPUs: 1\tStarting job\n"+saved("1", "2.00e+15")+
			"2026-01-01 13:00:00\tJob ID: 9\t# GPUs: 1\tStarting job\n"), 0o644))
	l := &progressLog{path: p, world: 1}
	start, flops, err := l.firstStart()
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local), start)
	require.Equal(t, 1e15, flops)
	l.world = 4
	_, _, err = l.firstStart()
	require.ErrorContains(t, err, `no "Starting job" line for 4 GPUs`)
}
