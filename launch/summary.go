package launch

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Failure is one failed worker, as torchelastic's ProcessFailure.
type Failure struct {
	Rank, LocalRank int
	PID             int
	ExitCode        int    // negative: killed by signal -ExitCode
	ErrorFile       string // "<N/A>" when the worker wrote none
	Traceback       string
	Time            time.Time // error file timestamp when present, else when the exit was seen
	seen            time.Time // when the launcher saw the exit: orders root causes
}

const notAvailable = "<N/A>"

// newFailure builds a Failure from a worker's exit, reading its error file when present.
func newFailure(rank, localRank, pid, exitCode int, errorFile string, seen time.Time) Failure {
	f := Failure{Rank: rank, LocalRank: localRank, PID: pid, ExitCode: exitCode, ErrorFile: notAvailable, Time: seen, seen: seen}
	if _, err := os.Stat(errorFile); err == nil {
		tb, ts, err := readErrorFile(errorFile)
		if err != nil {
			tb = fmt.Sprintf("(unreadable error file: %v)", err)
		}
		f.ErrorFile, f.Traceback = errorFile, tb
		if ts > 0 {
			f.Time = time.Unix(ts, 0)
		}
	}
	if f.Traceback == "" {
		if exitCode < 0 {
			f.Traceback = fmt.Sprintf("Signal %d (%s) received by PID %d", -exitCode, unixSignalName(syscall.Signal(-exitCode)), pid)
		} else {
			f.Traceback = "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"
		}
	}
	return f
}

// FormatSummary renders torchelastic's ChildFailedError message for the failures of a worker
// group, byte for byte: the root cause is the first observed failure, the others are listed
// under "Failures:" (or <NO_OTHER_FAILURES>), the rule width is the widest line capped at 60.
// One departure: a first observed failure that blames a failed peer ("peer rank K failed")
// passes the root cause to it (blamed).
func FormatSummary(name, host string, failures []Failure) string {
	if len(failures) == 0 {
		return ""
	}
	root := 0
	for i, f := range failures {
		if f.seen.Before(failures[root].seen) {
			root = i
		}
	}
	root = blamed(failures, root)
	title := name + " FAILED"
	width := utf8.RuneCountInString(title)
	var rootFmt string
	var others []string
	for i, f := range failures {
		s := fmt.Sprintf("[%d]:\n  time      : %s\n  host      : %s\n  rank      : %d (local_rank: %d)\n  exitcode  : %d (pid: %d)\n  error_file: %s\n  traceback : %s",
			i, f.Time.Format("2006-01-02_15:04:05"), host, f.Rank, f.LocalRank, f.ExitCode, f.PID, f.ErrorFile,
			strings.ReplaceAll(f.Traceback, "\n", "\n  "))
		for _, line := range strings.Split(s, "\n") {
			width = max(width, utf8.RuneCountInString(line))
		}
		if i == root {
			rootFmt = s
		} else {
			others = append(others, s)
		}
	}
	width = min(width, 60)
	if len(others) == 0 {
		others = []string{"  <NO_OTHER_FAILURES>"}
	}
	border, section := strings.Repeat("=", width), strings.Repeat("-", width)
	return "\n" + border + "\n" + title + "\n" + section + "\nFailures:\n" + strings.Join(others, "\n") +
		"\n" + section + "\nRoot Cause (first observed failure):\n" + rootFmt + "\n" + border
}

func unixSignalName(s syscall.Signal) string { return unix.SignalName(s) }

// blamed follows "peer rank K failed" (comm.PeerError) from the first observed failure to
// the failure of rank K when the group has one: a worker killed outright (SIGKILL, the OOM
// killer) can be seen exiting after the survivors that lost it, whose errors name it.
func blamed(failures []Failure, root int) int {
	for range failures { // a chain visits each failure at most once
		var k int
		i := strings.Index(failures[root].Traceback, "peer rank ")
		if i < 0 {
			return root
		}
		if _, err := fmt.Sscanf(failures[root].Traceback[i:], "peer rank %d failed", &k); err != nil {
			return root
		}
		next := -1
		for j, f := range failures {
			if f.Rank == k && j != root {
				next = j
			}
		}
		if next < 0 {
			return root
		}
		root = next
	}
	return root
}
