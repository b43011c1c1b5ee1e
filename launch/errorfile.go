package launch

import (
	"encoding/json"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"
)

// ErrorFileEnv names the file a worker writes its error to (set by the launcher per rank).
const ErrorFileEnv = "TORCHELASTIC_ERROR_FILE"

// errorFile is torchelastic's error file format (ErrorHandler.record_exception):
//
//	{"message": {"message": "<error>", "extraInfo": {"py_callstack": "<stack>", "timestamp": "<unix s>"}}}
type errorFile struct {
	Message errorMessage `json:"message"`
}

type errorMessage struct {
	Message   string    `json:"message"`
	ExtraInfo extraInfo `json:"extraInfo"`
}

type extraInfo struct {
	PyCallstack string `json:"py_callstack"`
	Timestamp   string `json:"timestamp"`
}

// RecordErrors runs main the way torchelastic's @record decorator runs a Python entry point:
// when main returns an error or panics, the error (with the goroutine stack for a panic) is
// written to $TORCHELASTIC_ERROR_FILE so the launcher's failure summary shows it. It returns
// the exit code: 0 on success, 1 on an error, 2 on a panic (Go's own panic exit code). The
// error or panic is also printed to stderr. Without TORCHELASTIC_ERROR_FILE nothing is written.
func RecordErrors(main func() error) (code int) {
	defer func() {
		if r := recover(); r != nil {
			stack := fmt.Sprintf("panic: %v\n\n%s", r, debug.Stack())
			fmt.Fprint(os.Stderr, stack)
			writeErrorFile(fmt.Sprintf("panic: %v", r), stack)
			code = 2
		}
	}()
	if err := main(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		writeErrorFile(err.Error(), "error: "+err.Error())
		return 1
	}
	return 0
}

func writeErrorFile(msg, stack string) {
	path := os.Getenv(ErrorFileEnv)
	if path == "" {
		return
	}
	data, _ := json.Marshal(errorFile{Message: errorMessage{Message: msg,
		ExtraInfo: extraInfo{PyCallstack: stack, Timestamp: strconv.FormatInt(time.Now().Unix(), 10)}}})
	err := os.MkdirAll(filepath.Dir(path), 0o755)
	if err == nil {
		err = atomicfile.WriteFile(path, data)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: cannot write error file %s: %v\n", path, err)
	}
}

// readErrorFile reads a worker's error file as ProcessFailure does: the message is either a
// string (then "timestamp" sits beside it) or an object with extraInfo.py_callstack and
// extraInfo.timestamp. It returns the text for the summary's traceback field and the
// timestamp (0 when absent).
func readErrorFile(path string) (traceback string, ts int64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	var raw struct {
		Message   json.RawMessage `json:"message"`
		Timestamp json.Number     `json:"timestamp"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return "", 0, fmt.Errorf("error file %s: %w", path, err)
	}
	var s string
	if json.Unmarshal(raw.Message, &s) == nil {
		ts, _ = raw.Timestamp.Int64()
		return s, ts, nil
	}
	var m struct {
		Message   *string `json:"message"`
		ExtraInfo struct {
			PyCallstack *string     `json:"py_callstack"`
			Timestamp   json.Number `json:"timestamp"`
		} `json:"extraInfo"`
	}
	if err := json.Unmarshal(raw.Message, &m); err != nil {
		return "", 0, fmt.Errorf("error file %s: field message: %w", path, err)
	}
	ts, _ = m.ExtraInfo.Timestamp.Int64()
	switch {
	case m.ExtraInfo.PyCallstack != nil:
		return *m.ExtraInfo.PyCallstack, ts, nil
	case m.Message != nil:
		return *m.Message, ts, nil
	}
	return "<N/A>", ts, nil
}
