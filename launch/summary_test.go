package launch

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// torchSummary asks torchelastic itself (Debian's python3-torch) to format the failures:
// ProcessFailure reads each error file; timestamps of failures without one are set as given.
const torchSummaryPy = `
import json, socket, sys
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure, ChildFailedError
print(socket.getfqdn())
for spec in json.load(sys.stdin):
    fails = {}
    for f in spec["failures"]:
        pf = ProcessFailure(local_rank=f["local_rank"], pid=f["pid"], exitcode=f["exitcode"], error_file=f["error_file"])
        if f.get("timestamp"):
            pf.timestamp = f["timestamp"]
        fails[f["rank"]] = pf
    sys.stdout.write(ChildFailedError(spec["name"], fails).format_msg() + "\0")
`

// torchSummaries formats each spec with torchelastic in one python run (importing torch is
// slow); it skips the test when python3-torch is missing.
func torchSummaries(t *testing.T, specs []map[string]any) (host string, msgs []string) {
	t.Helper()
	in, _ := json.Marshal(specs)
	cmd := exec.Command("/usr/bin/python3", "-c", torchSummaryPy)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && (strings.Contains(stderr.String(), "No module named") || errors.Is(err, exec.ErrNotFound) || os.IsNotExist(err)) {
		t.Skipf("needs /usr/bin/python3 with torch (python3-torch): %v %s", err, stderr.String())
	}
	require.NoError(t, err, stderr.String())
	host, rest, _ := strings.Cut(string(out), "\n")
	msgs = strings.Split(strings.TrimSuffix(rest, "\x00"), "\x00")
	require.Len(t, msgs, len(specs))
	return host, msgs
}

type pyFailure struct {
	Rank      int    `json:"rank"`
	LocalRank int    `json:"local_rank"`
	PID       int    `json:"pid"`
	ExitCode  int    `json:"exitcode"`
	ErrorFile string `json:"error_file"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

func TestFormatSummaryMatchesTorchelastic(t *testing.T) {
	dir := t.TempDir()
	// A Go worker's panic recorded by RecordErrors: torchelastic reads it and shows the stack.
	panicFile := filepath.Join(dir, "panic.json")
	t.Setenv(ErrorFileEnv, panicFile)
	require.Equal(t, 2, RecordErrors(func() error { panic("boom") }))
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	dictFile := write("dict.json", `{"message": {"message": "RuntimeError: boom", "extraInfo": {"py_callstack": "Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\nRuntimeError: boom that is long enough to pass the sixty column cap of the rules\n", "timestamp": "1718569000"}}}`)
	strFile := write("str.json", `{"message": "plain message", "timestamp": 1718569100}`)
	noStack := write("nostack.json", `{"message": {"message": "only a message", "extraInfo": {"timestamp": "1718569050"}}}`)
	missing := filepath.Join(dir, "absent.json")

	cases := []struct {
		name     string
		title    string
		failures []pyFailure
	}{
		{"one exit code, no error file", "train.py", []pyFailure{{Rank: 2, LocalRank: 2, PID: 76628, ExitCode: 1, ErrorFile: missing, Timestamp: 1718568874}}},
		{"signal and error file; root is earliest", "pretrain", []pyFailure{
			{Rank: 0, LocalRank: 0, PID: 11, ExitCode: -9, ErrorFile: missing, Timestamp: 1718569010},
			{Rank: 5, LocalRank: 1, PID: 12, ExitCode: 1, ErrorFile: dictFile},
			{Rank: 6, LocalRank: 2, PID: 13, ExitCode: -11, ErrorFile: missing, Timestamp: 1718569020},
		}},
		{"string message and message without stack", "x", []pyFailure{
			{Rank: 3, LocalRank: 3, PID: 99, ExitCode: 2, ErrorFile: strFile},
			{Rank: 1, LocalRank: 1, PID: 98, ExitCode: 1, ErrorFile: noStack},
		}},
		{"Go panic recorded by RecordErrors", "pretrain", []pyFailure{{Rank: 0, PID: 1, ExitCode: 2, ErrorFile: panicFile}}},
	}
	var specs []map[string]any
	for _, tc := range cases {
		specs = append(specs, map[string]any{"name": tc.title, "failures": tc.failures})
	}
	host, wants := torchSummaries(t, specs)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := wants[i]

			var fs []Failure
			for _, f := range tc.failures {
				seen := time.Unix(f.Timestamp, 0)
				if f.Timestamp == 0 {
					_, ts, err := readErrorFile(f.ErrorFile)
					require.NoError(t, err)
					seen = time.Unix(ts, 0)
				}
				fs = append(fs, newFailure(f.Rank, f.LocalRank, f.PID, f.ExitCode, f.ErrorFile, seen))
			}
			assert.Equal(t, want, FormatSummary(tc.title, host, fs))
			if strings.HasPrefix(tc.name, "Go panic") {
				assert.Contains(t, want, "traceback : panic: boom\n  \n  goroutine ")
			}
		})
	}
}

func TestRecordErrorsWritesTorchelasticErrorFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name     string
		main     func() error
		code     int
		message  string
		stackHas string
	}{
		{"ok", func() error { return nil }, 0, "", ""},
		{"error", func() error { return os.ErrNotExist }, 1, "file does not exist", "file does not exist"},
		{"panic", func() error { panic("boom") }, 2, "panic: boom", "launch.TestRecordErrorsWritesTorchelasticErrorFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name, "error.json")
			t.Setenv(ErrorFileEnv, path)
			before := time.Now().Unix()
			assert.Equal(t, tc.code, RecordErrors(tc.main))
			data, err := os.ReadFile(path)
			if tc.code == 0 {
				assert.True(t, os.IsNotExist(err), "no error file on success")
				return
			}
			require.NoError(t, err)
			var ef struct {
				Message struct {
					Message   string `json:"message"`
					ExtraInfo struct {
						PyCallstack string `json:"py_callstack"`
						Timestamp   string `json:"timestamp"`
					} `json:"extraInfo"`
				} `json:"message"`
			}
			require.NoError(t, json.Unmarshal(data, &ef))
			assert.Equal(t, tc.message, ef.Message.Message)
			assert.Contains(t, ef.Message.ExtraInfo.PyCallstack, tc.stackHas)
			tb, ts, err := readErrorFile(path)
			require.NoError(t, err)
			assert.Equal(t, ef.Message.ExtraInfo.PyCallstack, tb)
			assert.GreaterOrEqual(t, ts, before)
		})
	}

}

// TestRootCauseFollowsBlame: a survivor seen first whose error names a dead peer ("peer rank
// K failed", comm.PeerError) yields the root cause to that peer's failure, through chains,
// and keeps it when the named rank did not fail or the chain loops.
func TestRootCauseFollowsBlame(t *testing.T) {
	t0 := time.Unix(1718569000, 0)
	f := func(rank int, after time.Duration, tb string) Failure {
		return Failure{Rank: rank, PID: 100 + rank, ExitCode: 1, ErrorFile: notAvailable, Traceback: tb, Time: t0, seen: t0.Add(after)}
	}
	root := func(fs []Failure) string {
		s := FormatSummary("pretrain", "host", fs)
		return s[strings.Index(s, "Root Cause"):]
	}
	killed := Failure{Rank: 3, PID: 103, ExitCode: -9, ErrorFile: notAvailable, Traceback: "Signal 9 (SIGKILL) received by PID 103", Time: t0, seen: t0.Add(time.Second)}
	survivor := f(1, 0, "error: AllReduce on world: comm: peer rank 2 failed: EOF")
	middle := f(2, 500*time.Millisecond, "error: Recv: comm: peer rank 3 failed: connection reset")
	require.Contains(t, root([]Failure{survivor, middle, killed}), "rank      : 3 (local_rank: 0)")
	require.Contains(t, root([]Failure{survivor, killed}), "rank      : 1 (local_rank: 0)", "rank 2 did not fail: keep the first observed")
	loop := f(2, time.Second, "error: comm: peer rank 1 failed: EOF")
	require.Contains(t, root([]Failure{survivor, loop}), "rank      : ", "a loop ends")
}
