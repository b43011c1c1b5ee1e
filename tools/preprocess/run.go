package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// Config is what one preprocessing run does; the CLI fills it from Megatron's flags.
type Config struct {
	Input                 string   // --input: a file, a folder or a glob
	JSONKeys              []string // --json-keys
	OutputPrefix          string   // --output-prefix; "" writes no .bin/.idx (WuDao jsonl only)
	AppendEOD             bool     // --append-eod
	Workers               int      // --workers: encoding goroutines
	Partitions            int      // --partitions
	KeepSequentialSamples bool     // --keep-sequential-samples
	LogInterval           int      // --log-interval: documents between log lines
	WuDao                 bool     // --wudao: --input is raw WuDaoCorpora 2.0 (JSON arrays), cleaned as Pai does
	WuDaoJSONL            string   // --wudao-jsonl: also write the cleaned records as Pai's jsonl
	Pai                   bool     // Pai's preprocess_data.py semantics (the CLI sets it for Pai's tokenizer types; see encoder)
	Progress              string   // --progress: auto, bar, log or none
}

// Issue is a record or file that was skipped, with where it is and why.
type Issue struct {
	File   string
	Pos    string // "line 12" (JSON lines), "element 3" (JSON array), "" for the whole file
	Reason string
}

func (is Issue) String() string {
	if is.Pos == "" {
		return fmt.Sprintf("%s: %s", is.File, is.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", is.File, is.Pos, is.Reason)
}

// maxIssues is how many skipped records a Summary keeps for the report; all are counted.
const maxIssues = 100

// Summary is what a run did.
type Summary struct {
	Files      int
	Documents  int64 // documents written (per key)
	Empty      int64 // documents with no tokens in any key (written as empty documents)
	Dropped    int64 // Pai mode: records with empty text, filtered out as Pai's reader does
	Tokens     int64 // tokens written, over all keys
	Blank      int64 // blank lines skipped
	Skipped    int64 // records and files skipped, see Issues
	Issues     []Issue
	InputBytes int64 // bytes read from disk
	TextBytes  int64 // bytes of the records (decompressed JSON)
	Outputs    []string
	Elapsed    time.Duration
}

// check validates cfg without touching the file system.
func (cfg *Config) check(haveTokenizer bool) error {
	if len(cfg.JSONKeys) == 0 {
		return errors.New("--json-keys: at least one key is needed")
	}
	seen := map[string]bool{}
	for _, k := range cfg.JSONKeys {
		if k == "" || seen[k] {
			return fmt.Errorf("--json-keys %v: keys must be distinct and non-empty", cfg.JSONKeys)
		}
		seen[k] = true
	}
	if cfg.Workers < 1 {
		return fmt.Errorf("--workers %d: need at least 1", cfg.Workers)
	}
	if cfg.Partitions < 1 {
		return fmt.Errorf("--partitions %d: need at least 1", cfg.Partitions)
	}
	if cfg.LogInterval < 1 {
		return fmt.Errorf("--log-interval %d: need at least 1", cfg.LogInterval)
	}
	if cfg.WuDao && len(cfg.JSONKeys) != 1 {
		return fmt.Errorf("--wudao writes one key (the cleaned content), got --json-keys %v", cfg.JSONKeys)
	}
	if cfg.WuDaoJSONL != "" && !cfg.WuDao {
		return errors.New("--wudao-jsonl needs --wudao")
	}
	if cfg.OutputPrefix == "" && cfg.WuDaoJSONL == "" {
		return errors.New("--output-prefix is required")
	}
	if cfg.OutputPrefix != "" && !haveTokenizer {
		return errors.New("a tokenizer is required to write .bin/.idx (--tokenizer-type …)")
	}
	switch cfg.Progress {
	case "", "auto", "bar", "log", "none":
	default:
		return fmt.Errorf("--progress %q: want auto, bar, log or none", cfg.Progress)
	}
	return nil
}

// Run preprocesses cfg.Input with tok and writes the outputs; progress goes to logw. Skipped
// records do not fail the run: they are in the Summary. tok may be nil when only the WuDao
// jsonl is written.
func Run(ctx context.Context, cfg Config, tok tokenizer.Tokenizer, logw io.Writer) (*Summary, error) {
	if err := cfg.check(tok != nil); err != nil {
		return nil, err
	}
	files, err := expandInput(cfg.Input)
	if err != nil {
		return nil, err
	}
	enc := &encoder{keys: cfg.JSONKeys, appendEOD: cfg.AppendEOD, wudao: cfg.WuDao, jsonl: cfg.WuDaoJSONL != "", pai: cfg.Pai}
	dtype := indexed.Uint16
	parts := 0
	if cfg.OutputPrefix != "" {
		enc.tok = tok
		if cfg.AppendEOD && tok.EOD() < 0 {
			return nil, errors.New("--append-eod: the tokenizer has no end-of-document token")
		}
		enc.eod = int32(tok.EOD())
		dtype = indexed.OptimalDType(tok.VocabSize())
		parts = cfg.Partitions
		if cfg.KeepSequentialSamples {
			parts = 1
		}
	}
	out, err := newOutput(cfg.OutputPrefix, cfg.JSONKeys, dtype, parts, cfg.WuDaoJSONL)
	if err != nil {
		return nil, err
	}

	var total int64
	for _, f := range files {
		total += f.size
	}
	sum := &Summary{Files: len(files)}
	prog := newProgress(cfg.Progress, logw, total, cfg.LogInterval)
	start := time.Now()
	write := func(r *result) error {
		for k := range r.docs {
			d := &r.docs[k]
			if d.err != nil {
				sum.addIssue(Issue{File: files[d.file].path, Pos: posName(d.pos, d.array), Reason: d.err.Error()})
				continue
			}
			if d.drop {
				sum.Dropped++
				if d.line != nil { // the cleaned jsonl keeps it, as Pai's cleaning does
					if err := out.addLine(d.line); err != nil {
						return err
					}
				}
				continue
			}
			if err := out.add(d); err != nil {
				return err
			}
			sum.Documents++
			sum.TextBytes += int64(d.bytes)
			if d.empty {
				sum.Empty++
			}
			for _, kt := range d.keys {
				sum.Tokens += int64(len(kt.tokens))
			}
			prog.doc(sum)
		}
		for _, is := range r.issues {
			sum.addIssue(is)
		}
		sum.Blank += r.blank
		sum.InputBytes = r.consumed
		prog.update(sum)
		return nil
	}
	if err := pipeline(ctx, files, enc, cfg.Workers, write); err != nil {
		out.abort()
		prog.finish(sum)
		return sum, err
	}
	sum.Outputs, err = out.finish()
	sum.InputBytes = total
	sum.Elapsed = time.Since(start)
	prog.finish(sum)
	return sum, err
}

func (s *Summary) addIssue(is Issue) {
	s.Skipped++
	if len(s.Issues) < maxIssues {
		s.Issues = append(s.Issues, is)
	}
}

// posName names a record position for reports.
func posName(pos int64, array bool) string {
	if array {
		return fmt.Sprintf("element %d", pos)
	}
	return fmt.Sprintf("line %d", pos)
}

// fileIssue reports a file that could not be read to the end.
func fileIssue(path string, err error) Issue {
	var pe *posError
	if errors.As(err, &pe) {
		return Issue{File: path, Pos: posName(pe.pos, pe.array), Reason: "file unreadable from here on: " + pe.err.Error()}
	}
	return Issue{File: path, Reason: "file unreadable: " + err.Error()}
}
