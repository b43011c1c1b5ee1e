// Command preprocess turns JSON documents into Megatron's .bin/.idx datasets, as Megatron-LM's
// tools/preprocess_data.py does, with the same flags and output names, only in one process
// with goroutine workers. It also reads raw WuDaoCorpora 2.0 directly (--wudao), cleaning the
// text as Pai-Megatron-Patch's preprocess_wudao2.py does.
//
//	preprocess --input corpus.jsonl --output-prefix out/my --json-keys text \
//	    --tokenizer-type Llama2Tokenizer --tokenizer-model tokenizer.model --append-eod --workers 8
//	    → out/my_text_document.bin, out/my_text_document.idx
//
//	preprocess --wudao --input WuDaoCorpus2.0_base_200G --output-prefix out/wudao_llamabpe \
//	    --tokenizer-type LLamaTokenizer --load llama-2-7b-hf --append-eod --workers 16
//	    → out/wudao_llamabpe_text_document.bin/.idx (what Pai's run_make_pretraining_dataset.sh makes)
//
// With Pai's tokenizer names (LLamaTokenizer, Qwen2Tokenizer, FalconTokenizer, …) the
// encoding is Pai's preprocess_data.py's (no BOS, empty texts left out); with Megatron's
// names it is Megatron's. See README.md.
//
// Inputs: a file, a folder (its .jsonl/.json/.jsonl.zst/.gz files, sorted) or a glob. A file
// whose first byte is '[' is a JSON array of records, otherwise JSON lines. Records that
// cannot be used (invalid JSON, a missing key, a value that is not text) are skipped and listed
// with file and line (or array element) at the end instead of stopping the run as Megatron
// would; --strict turns any skip into exit status 3.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// cli holds Megatron's preprocess_data.py flags (and Pai's aliases).
type cli struct {
	Input                 string   `name:"input" required:"" help:"Input: a .jsonl/.json/.jsonl.zst/.gz file, a folder of such files (sorted by name) or a glob."`
	JSONKeys              []string `name:"json-keys" aliases:"jsonl-keys" default:"text" help:"Keys to extract from each record, space- or comma-separated; one output dataset per key."`
	SplitSentences        bool     `name:"split-sentences" help:"Not supported (needs NLTK punkt); give each sentence as an element of a list value instead."`
	KeepNewlines          bool     `name:"keep-newlines" help:"Only meaningful with --split-sentences."`
	Lang                  string   `name:"lang" default:"english" help:"Only meaningful with --split-sentences."`
	AppendEOD             bool     `name:"append-eod" help:"Append the tokenizer's end-of-document token to every non-empty document."`
	OutputPrefix          string   `name:"output-prefix" help:"Output path prefix: writes {prefix}_{key}_document.bin/.idx. Required unless only --wudao-jsonl is written."`
	Workers               int      `name:"workers" default:"${ncpu}" help:"Encoding goroutines (default: the number of CPUs)."`
	Partitions            int      `name:"partitions" default:"1" help:"Megatron's partitions: with P>1 records are dealt round-robin to P datasets merged in order (unless --keep-sequential-samples)."`
	LogInterval           int      `name:"log-interval" default:"1000" help:"Documents between progress log lines."`
	KeepSequentialSamples bool     `name:"keep-sequential-samples" help:"Keep the input order of records with --partitions>1."`

	TokenizerType  string `name:"tokenizer-type" aliases:"patch-tokenizer-type" help:"Megatron's tokenizer type (GPT2BPETokenizer, Llama2Tokenizer, HuggingFaceTokenizer, …) or Pai's (LLamaTokenizer, LLama3Tokenizer, Qwen2Tokenizer, Qwen3Tokenizer, QwenTokenizer, MistralTokenizer, FalconTokenizer, StarcoderTokenizerFromHF, BloomTokenizerFromHF)."`
	TokenizerModel string `name:"tokenizer-model" help:"Tokenizer model file or folder."`
	VocabFile      string `name:"vocab-file" help:"Vocab file (GPT-2 vocab.json, BERT vocab.txt)."`
	MergeFile      string `name:"merge-file" help:"BPE merges file."`
	VocabSize      int    `name:"vocab-size" help:"Vocab size (NullTokenizer)."`

	TiktokenPattern          string   `name:"tiktoken-pattern" help:"TikTokenizer: v1 or v2 (default v2)."`
	TiktokenNumSpecialTokens int      `name:"tiktoken-num-special-tokens" default:"1000" help:"TikTokenizer: number of special token ids before the ranks."`
	TiktokenSpecialTokens    []string `name:"tiktoken-special-tokens" help:"TikTokenizer: the special tokens, space- or comma-separated (default <unk> <s> </s>)."`
	Load                     string   `name:"load" help:"Pai: the HF model folder whose tokenizer to use (taken as --tokenizer-model when that is not given)."`
	DatasetImpl              string   `name:"dataset-impl" default:"mmap" help:"Pai/legacy Megatron: only mmap exists."`
	Language                 string   `name:"language" help:"Pai: accepted and ignored."`

	WuDao      bool   `name:"wudao" help:"--input is raw WuDaoCorpora 2.0 (JSON arrays of {id, title, content, …}); 'content' is cleaned as Pai's preprocess_wudao2.py and stored under the one --json-keys key."`
	WuDaoJSONL string `name:"wudao-jsonl" help:"With --wudao: also write the cleaned records as Pai's jsonl ({\"instruction\": \"\", \"input\": \"\", KEY: text} per line) to this file."`
	Progress   string `name:"progress" default:"auto" enum:"auto,bar,log,none" help:"Progress report on stderr: a bar on a terminal, Megatron's log lines otherwise."`
	Strict     bool   `name:"strict" help:"Exit with status 3 when any record was skipped."`
}

// nargsFlags take several space-separated values, as argparse's nargs='+'.
var nargsFlags = map[string]bool{"--json-keys": true, "--jsonl-keys": true, "--tiktoken-special-tokens": true}

// normalizeArgs rewrites argparse-style "--json-keys a b" into "--json-keys=a,b" for kong.
func normalizeArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !nargsFlags[a] {
			out = append(out, a)
			continue
		}
		var vals []string
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			vals = append(vals, args[i])
		}
		if len(vals) == 0 {
			out = append(out, a) // let kong report the missing value
			continue
		}
		out = append(out, a+"="+strings.Join(vals, ","))
	}
	return out
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain is the whole command: it returns the exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	var c cli
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("preprocess"),
		kong.Description("Megatron-LM's tools/preprocess_data.py in Go: JSON records → {prefix}_{key}_document.bin/.idx."),
		kong.Vars{"ncpu": fmt.Sprint(runtime.NumCPU())},
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
	)
	if err != nil {
		fmt.Fprintln(stderr, "preprocess:", err)
		return 2
	}
	if _, err := parser.Parse(normalizeArgs(args)); err != nil {
		if exit >= 0 { // --help
			return exit
		}
		fmt.Fprintln(stderr, "preprocess:", err)
		return 2
	}
	if exit >= 0 {
		return exit
	}
	cfg, err := c.config()
	if err == nil {
		err = cfg.check(cfg.OutputPrefix != "")
	}
	if err != nil {
		fmt.Fprintln(stderr, "preprocess:", err)
		return 2
	}
	var tok tokenizer.Tokenizer
	if cfg.OutputPrefix != "" {
		tok, err = buildTokenizer(c.tokenizerConfig())
		if err != nil {
			fmt.Fprintln(stderr, "preprocess:", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := Run(ctx, cfg, tok, stderr)
	if sum != nil {
		printSummary(stderr, sum)
	}
	if err != nil {
		fmt.Fprintln(stderr, "preprocess:", err)
		return 1
	}
	if c.Strict && sum.Skipped > 0 {
		return 3
	}
	return 0
}

// config checks the flags that have no Go counterpart and builds the Config.
func (c *cli) config() (Config, error) {
	if c.SplitSentences {
		return Config{}, errors.New("--split-sentences is not supported: it needs NLTK's punkt sentence splitter. " +
			"Split documents beforehand and give the sentences as a JSON list under the key; each becomes one sequence")
	}
	if c.DatasetImpl != "mmap" {
		return Config{}, fmt.Errorf("--dataset-impl %s: only mmap (Megatron's MMIDIDX .bin/.idx) is written", c.DatasetImpl)
	}
	return Config{
		Input: c.Input, JSONKeys: c.JSONKeys, OutputPrefix: c.OutputPrefix, AppendEOD: c.AppendEOD,
		Workers: c.Workers, Partitions: c.Partitions, KeepSequentialSamples: c.KeepSequentialSamples,
		LogInterval: c.LogInterval, WuDao: c.WuDao, WuDaoJSONL: c.WuDaoJSONL, Progress: c.Progress,
		Pai: tokenizer.IsPai(c.TokenizerType),
	}, nil
}

func (c *cli) tokenizerConfig() tokenizer.Config {
	model := c.TokenizerModel
	if model == "" {
		model = c.Load
	}
	return tokenizer.Config{TokenizerType: c.TokenizerType, TokenizerModel: model, VocabFile: c.VocabFile, MergeFile: c.MergeFile, VocabSize: c.VocabSize,
		TikToken: tokenizer.TikTokenConfig{Pattern: c.TiktokenPattern, NumSpecialTokens: c.TiktokenNumSpecialTokens, SpecialTokens: c.TiktokenSpecialTokens}}
}

// printSummary reports what was written and every skipped record (up to maxIssues).
func printSummary(w io.Writer, s *Summary) {
	mb := float64(s.InputBytes) / 1e6
	rate := 0.0
	if sec := s.Elapsed.Seconds(); sec > 0 {
		rate = mb / sec
	}
	fmt.Fprintf(w, "preprocess: %d documents (%d empty), %d tokens from %d files (%.1f MB) in %s (%.2f MB/s)\n",
		s.Documents, s.Empty, s.Tokens, s.Files, mb, s.Elapsed.Round(1e6), rate)
	if s.Dropped > 0 {
		fmt.Fprintf(w, "preprocess: %d records with empty text left out, as Pai's preprocess_data.py does\n", s.Dropped)
	}
	for _, o := range s.Outputs {
		fmt.Fprintf(w, "  wrote %s.bin, %s.idx\n", o, o)
	}
	if s.Blank > 0 {
		fmt.Fprintf(w, "preprocess: %d blank lines ignored\n", s.Blank)
	}
	if s.Skipped == 0 {
		return
	}
	fmt.Fprintf(w, "preprocess: skipped %d records or files:\n", s.Skipped)
	for _, is := range s.Issues {
		fmt.Fprintf(w, "  %s\n", is)
	}
	if s.Skipped > int64(len(s.Issues)) {
		fmt.Fprintf(w, "  … and %d more\n", s.Skipped-int64(len(s.Issues)))
	}
}
