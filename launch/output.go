package launch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Std is a set of standard streams, as torchrun's -r/-t values: 1 stdout, 2 stderr, 3 both.
type Std int

const (
	StdNone   Std = 0
	StdOut    Std = 1
	StdErr    Std = 2
	StdAll    Std = 3
	stdStream     = 2 // number of streams
)

// parseStd reads "3" (every local rank) or "0:1,1:2" (per local rank) into a per-rank
// function.
func parseStd(flag, v string) (func(localRank int) Std, error) {
	if v == "" {
		return func(int) Std { return StdNone }, nil
	}
	one := func(s string) (Std, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 3 {
			return 0, fmt.Errorf("%s %q: want 0 (none), 1 (stdout), 2 (stderr) or 3 (both), or local_rank:value pairs", flag, v)
		}
		return Std(n), nil
	}
	if !strings.Contains(v, ":") {
		s, err := one(v)
		return func(int) Std { return s }, err
	}
	m := map[int]Std{}
	for _, part := range strings.Split(v, ",") {
		r, s, ok := strings.Cut(part, ":")
		lr, err := strconv.Atoi(r)
		if !ok || err != nil || lr < 0 {
			return nil, fmt.Errorf("%s %q: bad item %q (want local_rank:value)", flag, v, part)
		}
		if m[lr], err = one(s); err != nil {
			return nil, err
		}
	}
	return func(lr int) Std { return m[lr] }, nil
}

// parseRanksFilter reads --local-ranks-filter "0,2"; nil means every rank.
func parseRanksFilter(v string) (map[int]bool, error) {
	if v == "" {
		return nil, nil
	}
	m := map[int]bool{}
	for _, p := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--local-ranks-filter %q: %q is not a local rank", v, p)
		}
		m[n] = true
	}
	return m, nil
}

// lineSink writes whole lines to a shared console stream so lines of different workers
// never interleave mid-line.
type lineSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *lineSink) writeLine(prefix string, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prefix != "" {
		io.WriteString(s.w, prefix)
	}
	s.w.Write(line)
	if len(line) == 0 || line[len(line)-1] != '\n' {
		io.WriteString(s.w, "\n")
	}
}

// pump copies a worker stream line by line to its log file (when file is non-nil) and, when
// console is non-nil, to the console with prefix. It returns when r reaches EOF or errors.
func pump(r io.Reader, file *os.File, console *lineSink, prefix string) {
	br := bufio.NewReaderSize(r, 64<<10)
	var fw *bufio.Writer
	if file != nil {
		fw = bufio.NewWriter(file)
		defer func() { fw.Flush(); file.Close() }()
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if fw != nil {
				fw.Write(line)
				if line[len(line)-1] == '\n' {
					fw.Flush()
				}
			}
			if console != nil {
				console.writeLine(prefix, line)
			}
		}
		if err != nil {
			return
		}
	}
}

// linePrefix renders torchrun's line prefix template (TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE,
// default "[${role_name}${local_rank}]:") for one worker.
func linePrefix(template, role string, rank, localRank int) string {
	if template == "" {
		template = "[${role_name}${local_rank}]:"
	}
	return strings.NewReplacer("${role_name}", role, "${local_rank}", strconv.Itoa(localRank),
		"${rank}", strconv.Itoa(rank)).Replace(template)
}
