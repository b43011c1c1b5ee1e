// Command vocabext extends the vocabulary of a Hugging Face Llama model with new
// SentencePiece pieces, as Pai-Megatron-Patch's guide for Chinese does (Chinese-LLaMA's
// merge_tokenizers.py, then resizing the embeddings before conversion and continued
// pretraining), in one step:
//
//	vocabext --model-dir llama-2-7b-hf --new-pieces chinese_sp.model \
//	    --output-dir llama-2-7b-zh-hf [--init mean|normal] [--pad-to-multiple-of 64]
//	    → llama-2-7b-zh-hf/tokenizer.model (the old pieces, then the new ones), config.json
//	      (vocab_size updated), *.safetensors (embed_tokens and lm_head resized), the other
//	      files copied; ready for tools/convert and training.
//
// New pieces are the pieces of --new-pieces absent from tokenizer.model, appended with
// score 0 so every old id stays the same. A new token's embedding (and output) row is the
// mean of the rows of the old ids its piece encodes to (--init mean, the default), or
// N(0, 0.02) as Pai's convertor initialises --extra_num_vocabs rows (--init normal).
// tokenizer.json is not written: see docs/vocab-extension.md.
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kong"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// cli holds the tool's flags.
type cli struct {
	ModelDir        string `name:"model-dir" required:"" help:"Hugging Face Llama folder: config.json, *.safetensors, tokenizer.model (tokenizer_config.json, special_tokens_map.json, … are copied)."`
	NewPieces       string `name:"new-pieces" required:"" help:"The pieces to add: a SentencePiece .model trained on the new corpus, or a text file with one piece per line (a .vocab file works; '▁' or a space marks a word start)."`
	OutputDir       string `name:"output-dir" required:"" help:"Folder to write; must be absent or empty unless --force."`
	Init            string `name:"init" default:"mean" enum:"mean,normal" help:"New rows: the mean of the rows of the piece's tokens under the old tokenizer, or N(0, 0.02) as Pai's convertor."`
	PadToMultipleOf int    `name:"pad-to-multiple-of" help:"Round the embedding rows (and config vocab_size) up to a multiple of this; the padding rows have no token."`
	Seed            uint64 `name:"seed" default:"1234" help:"Seed of the N(0, 0.02) rows."`
	Force           bool   `name:"force" help:"Write into a non-empty --output-dir, replacing what this tool writes there."`
	Progress        string `name:"progress" default:"auto" enum:"auto,bar,none" help:"Progress bar on stderr while writing weights: auto shows it on a terminal."`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vocabext:", err)
		os.Exit(1)
	}
}

// run parses args and extends; it is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) error {
	var c cli
	parser, err := kong.New(&c, kong.Name("vocabext"),
		kong.Description("Add SentencePiece pieces to a Hugging Face Llama model's tokenizer and resize its embeddings and output layer (Pai-Megatron-Patch's vocabulary extension)."),
		kong.Writers(stdout, stderr), kong.Exit(func(int) {}))
	if err != nil {
		return err
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			parser.Parse(args) // prints the help; the missing required flags do not matter
			return nil
		}
	}
	if _, err := parser.Parse(args); err != nil {
		return err
	}
	opts := options{
		modelDir: c.ModelDir, newPieces: c.NewPieces, outputDir: c.OutputDir, init: c.Init,
		padTo: c.PadToMultipleOf, seed: c.Seed, force: c.Force, log: stdout,
		progress: newProgress(c.Progress, stderr),
	}
	_, err = extend(opts)
	return err
}

// newProgress returns a byte-count callback pair drawing a bar on w (mode "bar", or
// "auto" on a terminal), or no-ops.
func newProgress(mode string, w io.Writer) func(total int64) (add func(int), done func()) {
	if mode == "auto" {
		mode = "none"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	return func(total int64) (func(int), func()) {
		if mode != "bar" {
			return func(int) {}, func() {}
		}
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("writing weights"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		return func(n int) { bar.Add(n) }, func() { bar.Finish() }
	}
}
