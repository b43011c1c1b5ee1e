package train

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// progressLog is Megatron's --log-progress file, progress.txt in --save: world rank 0
// appends a "Starting job" line when a job starts and, after each checkpoint, the job's
// and the cumulative throughput (since the first job of this world size), the floating-point
// operations so far and the tokens consumed. Every line is
//
//	<date time>\tJob ID: <SLURM_JOB_ID>\t# GPUs: <world size>\t<entry>
type progressLog struct {
	path       string
	world      int
	start      time.Time // when this job started (Megatron's _TRAIN_START_TIME)
	startFLOPs float64   // the loaded checkpoint's floating-point operations
}

// newProgressLog returns the run's progress log (nil without --log-progress or --save) and
// writes its "Starting job" line from rank 0.
func (a *Args) newProgressLog(rank, world int, start time.Time) (*progressLog, error) {
	if !a.LogProgress || a.Save == "" {
		return nil, nil
	}
	l := &progressLog{path: filepath.Join(a.Save, "progress.txt"), world: world, start: start}
	if rank != 0 {
		return l, nil
	}
	if err := os.MkdirAll(a.Save, 0o755); err != nil {
		return nil, fmt.Errorf("--log-progress: %w", err)
	}
	return l, l.append(start, "Starting job")
}

// append writes one line (an append of a whole line: readers never see half of it).
func (l *progressLog) append(now time.Time, entry string) error {
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("--log-progress: %w", err)
	}
	line := fmt.Sprintf("%s\tJob ID: %s\t# GPUs: %d\t%s\n", now.Format("2006-01-02 15:04:05"), os.Getenv("SLURM_JOB_ID"), l.world, entry)
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("--log-progress: %s: %w", l.path, err)
	}
	return f.Close()
}

// saved appends the line for the checkpoint of iteration it (world rank 0 only).
func (l *progressLog) saved(now time.Time, it int, flops float64, tokens int64) error {
	job := (flops - l.startFLOPs) / (now.Sub(l.start).Seconds() * 1e12 * float64(l.world))
	first, firstFLOPs, err := l.firstStart()
	if err != nil {
		return err
	}
	cumulative := (flops - firstFLOPs) / (now.Sub(first).Seconds() * 1e12 * float64(l.world))
	return l.append(now, fmt.Sprintf("Saved checkpoint\tIteration: %d\tJob throughput: %.1f TFLOP/s/GPU\t"+
		"Cumulative throughput: %.1f TFLOP/s/GPU\tFloating-point operations: %.2e\tTokens (in billions): %.2f",
		it, job, cumulative, flops, float64(tokens)/1e9))
}

// firstStart is Megatron's get_start_time_from_progress_log: the start of the earliest job
// in the latest run of jobs with this world size, and the floating-point operations of the
// last checkpoint saved before it.
func (l *progressLog) firstStart() (time.Time, float64, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("--log-progress: %w", err)
	}
	defer f.Close()
	field := func(tok string) string { _, v, _ := strings.Cut(tok, ": "); return v }
	var start time.Time
	var startFLOPs, latest float64
	found := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		tok := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		if len(tok) < 4 {
			return time.Time{}, 0, fmt.Errorf("--log-progress: %s line %d: %d tab-separated fields, want at least 4", l.path, n, len(tok))
		}
		world, err := strconv.Atoi(field(tok[2]))
		if err != nil {
			return time.Time{}, 0, fmt.Errorf("--log-progress: %s line %d: %q is not \"# GPUs: N\"", l.path, n, tok[2])
		}
		if tok[3] == "Saved checkpoint" && len(tok) > 7 {
			if latest, err = strconv.ParseFloat(field(tok[7]), 64); err != nil {
				return time.Time{}, 0, fmt.Errorf("--log-progress: %s line %d: %q is not \"Floating-point operations: X\"", l.path, n, tok[7])
			}
		}
		if world != l.world {
			found = false
			continue
		}
		if tok[3] == "Starting job" && !found {
			if start, err = time.ParseInLocation("2006-01-02 15:04:05", tok[0], time.Local); err != nil {
				return time.Time{}, 0, fmt.Errorf("--log-progress: %s line %d: %w", l.path, n, err)
			}
			startFLOPs, found = latest, true
		}
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, 0, fmt.Errorf("--log-progress: %s: %w", l.path, err)
	}
	if !found {
		return time.Time{}, 0, fmt.Errorf("--log-progress: %s has no \"Starting job\" line for %d GPUs", l.path, l.world)
	}
	return start, startFLOPs, nil
}
