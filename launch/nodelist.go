package launch

import (
	"fmt"
	"strconv"
	"strings"
)

// ExpandNodeList expands a Slurm hostlist expression (SLURM_JOB_NODELIST) into host names in
// order, as `scontrol show hostnames` does: "gpu[01-04,07],cpu5" → gpu01 gpu02 gpu03 gpu04
// gpu07 cpu5. Ranges keep their zero padding; several bracket groups in one name expand as a
// cartesian product ("r[1-2]n[1-2]" → r1n1 r1n2 r2n1 r2n2).
func ExpandNodeList(s string) ([]string, error) {
	var hosts []string
	for _, item := range splitTop(s) {
		if item == "" {
			continue
		}
		exp, err := expandHost(item)
		if err != nil {
			return nil, fmt.Errorf("node list %q: %w", s, err)
		}
		hosts = append(hosts, exp...)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("node list %q names no host", s)
	}
	return hosts, nil
}

// splitTop splits at commas outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

func expandHost(item string) ([]string, error) {
	open := strings.IndexByte(item, '[')
	if open < 0 {
		if strings.ContainsAny(item, "]") {
			return nil, fmt.Errorf("unbalanced ] in %q", item)
		}
		return []string{item}, nil
	}
	close := strings.IndexByte(item[open:], ']')
	if close < 0 {
		return nil, fmt.Errorf("unbalanced [ in %q", item)
	}
	close += open
	prefix, body, rest := item[:open], item[open+1:close], item[close+1:]
	suffixes, err := expandHost(rest)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, part := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if lo == "" || err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("bad range %q in %q", part, item)
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("range %q in %q is too large", part, item)
		}
		width := len(lo)
		for n := a; n <= b; n++ {
			for _, suf := range suffixes {
				out = append(out, fmt.Sprintf("%s%0*d%s", prefix, width, n, suf))
			}
		}
	}
	return out, nil
}

// parseTasksPerNode expands SLURM_TASKS_PER_NODE ("8(x2),4") into one count per node.
func parseTasksPerNode(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, rep := part, "1"
		if i := strings.IndexByte(part, '('); i >= 0 {
			if !strings.HasPrefix(part[i:], "(x") || !strings.HasSuffix(part, ")") {
				return nil, fmt.Errorf("SLURM_TASKS_PER_NODE %q: bad item %q", s, part)
			}
			n, rep = part[:i], part[i+2:len(part)-1]
		}
		c, err1 := strconv.Atoi(n)
		r, err2 := strconv.Atoi(rep)
		if err1 != nil || err2 != nil || c < 0 || r < 1 {
			return nil, fmt.Errorf("SLURM_TASKS_PER_NODE %q: bad item %q", s, part)
		}
		for j := 0; j < r; j++ {
			out = append(out, c)
		}
	}
	return out, nil
}
