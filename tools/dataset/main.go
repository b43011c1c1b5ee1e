// Command dataset inspects Megatron .bin/.idx datasets and builds GPTDataset sample indices
// exactly as Megatron-LM does.
//
//	dataset info PREFIX
//	    documents, sequences, tokens, dtype, and the length statistics of PREFIX.bin/.idx
//	dataset indices --data-path PREFIX --split 949,50,1 --seq-length 2048 \
//	        --num-samples 100000,1000,100 --seed 1234 --out DIR
//	    → DIR/{train,valid,test}/{document_index,sample_index,shuffle_index}.npy, byte-identical
//	      to the files Megatron caches for the same inputs (a missing or empty count is None:
//	      one epoch); --data-cache-path also writes Megatron-named cache files
//	dataset show --data-path PREFIX [index flags] --split-name train --start 0 --count 4
//	    the token ids of samples, optionally decoded with --tokenizer-type and friends
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/indexed"
)

// indexFlags are the Megatron flags GPTDataset index building depends on.
type indexFlags struct {
	DataPath   string `name:"data-path" required:"" help:"Dataset prefix (PREFIX.bin / PREFIX.idx), as Megatron's --data-path."`
	Split      string `name:"split" default:"969, 30, 1" help:"Train/valid/test proportions, e.g. 949,50,1 (Megatron's default is '969, 30, 1')."`
	SeqLength  int    `name:"seq-length" required:"" help:"Sequence length S of each sample."`
	NumSamples string `name:"num-samples" help:"Samples per split: N or N,NV,NT; a missing or empty count is None (exactly one epoch)."`
	Seed       uint32 `name:"seed" default:"1234" help:"Random seed (numpy RandomState), Megatron's --seed."`

	AddExtraToken      bool   `name:"add-extra-token-to-sequence" default:"true" negatable:"" help:"Read S+1 tokens per sample so labels are the next tokens (Megatron's add_extra_token_to_sequence)."`
	DropLastValidation bool   `name:"drop-last-partial-validation-sequence" default:"true" negatable:"" help:"Drop the last partial validation sample instead of padding it."`
	DataCachePath      string `name:"data-cache-path" help:"Also write Megatron-named cache files ({md5}-GPTDataset-{split}-*.npy, description.txt) here."`
	TokenizerIDs       string `name:"tokenizer-identifiers" help:"JSON object of the tokenizer's unique_identifiers, part of Megatron's cache hash (with --data-cache-path)."`
}

// sizes parses --num-samples into the builder's three sizes (-1 = None).
func (f *indexFlags) sizes() ([3]int, error) {
	s := [3]int{-1, -1, -1}
	if strings.TrimSpace(f.NumSamples) == "" {
		return s, nil
	}
	parts := strings.Split(f.NumSamples, ",")
	if len(parts) > 3 {
		return s, fmt.Errorf("--num-samples %q has %d counts, want at most 3 (train,valid,test)", f.NumSamples, len(parts))
	}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" || strings.EqualFold(p, "none") {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return s, fmt.Errorf("--num-samples %q: count %d (%q) is not a non-negative integer", f.NumSamples, i, p)
		}
		s[i] = n
	}
	return s, nil
}

// build opens the dataset and builds the GPTDatasets of every split.
func (f *indexFlags) build() (*indexed.Dataset, [3]*gpt.Dataset, error) {
	var none [3]*gpt.Dataset
	sizes, err := f.sizes()
	if err != nil {
		return nil, none, err
	}
	if f.SeqLength <= 1 {
		return nil, none, fmt.Errorf("--seq-length must be greater than 1, got %d", f.SeqLength)
	}
	var tok gpt.OrderedMap
	if f.TokenizerIDs != "" {
		if err := tok.UnmarshalJSON([]byte(f.TokenizerIDs)); err != nil {
			return nil, none, fmt.Errorf("--tokenizer-identifiers: %w", err)
		}
	}
	low, err := indexed.Open(f.DataPath)
	if err != nil {
		return nil, none, err
	}
	ds, err := gpt.BuildSplits(low, gpt.BuildConfig{
		DataPath: f.DataPath, Split: f.Split, Sizes: sizes, RandomSeed: f.Seed, SequenceLength: f.SeqLength,
		AddExtraToken: f.AddExtraToken, DropLastPartialValidationSequence: f.DropLastValidation,
		CacheDir: f.DataCachePath, Tokenizer: tok,
		Dataset: gpt.DatasetConfig{Pad: gpt.PadTokenIDNone, EOD: -2},
	})
	if err != nil {
		low.Close()
		return nil, none, err
	}
	return low, ds, nil
}

type infoCmd struct {
	Prefix string `arg:"" help:"Dataset prefix (PREFIX.bin / PREFIX.idx)."`
}

type indicesCmd struct {
	indexFlags
	Out string `name:"out" required:"" help:"Output folder: writes OUT/{train,valid,test}/{document_index,sample_index,shuffle_index}.npy."`
}

type cli struct {
	Info    infoCmd    `cmd:"" help:"Print the documents, sequences, tokens and dtype of a dataset."`
	Indices indicesCmd `cmd:"" help:"Build Megatron's GPTDataset document, sample and shuffle indices."`
	Show    showCmd    `cmd:"" help:"Print samples' token ids (optionally decoded)."`
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the whole command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var c cli
	exit := -1
	parser, err := kong.New(&c, kong.Name("dataset"),
		kong.Description("Inspect Megatron .bin/.idx datasets and build GPTDataset indices exactly as Megatron-LM."),
		kong.Writers(stdout, stderr), kong.Exit(func(code int) { exit = code }))
	if err != nil {
		fmt.Fprintln(stderr, "dataset:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 {
		return exit
	}
	if err != nil {
		fmt.Fprintln(stderr, "dataset:", err)
		return 2
	}
	switch kctx.Command() {
	case "info <prefix>":
		err = c.Info.run(stdout)
	case "indices":
		err = c.Indices.run(stdout)
	case "show":
		err = c.Show.run(stdout)
	default:
		err = errors.New("unknown command " + kctx.Command())
	}
	if err != nil {
		fmt.Fprintln(stderr, "dataset:", err)
		return 1
	}
	return 0
}

func (c *infoCmd) run(w io.Writer) error {
	d, err := indexed.Open(c.Prefix)
	if err != nil {
		return err
	}
	defer d.Close()
	lengths := d.SequenceLengths()
	minL, maxL := int32(0), int32(0)
	for i, n := range lengths {
		if i == 0 || n < minL {
			minL = n
		}
		maxL = max(maxL, n)
	}
	fmt.Fprintf(w, "prefix     %s\n", c.Prefix)
	fmt.Fprintf(w, "dtype      %s (code %d, %d bytes per token)\n", d.DType(), d.DType(), d.DType().Size())
	fmt.Fprintf(w, "documents  %d\n", d.NumDocuments())
	fmt.Fprintf(w, "sequences  %d\n", d.NumSequences())
	fmt.Fprintf(w, "tokens     %d\n", d.NumTokens())
	if len(lengths) > 0 {
		fmt.Fprintf(w, "sequence length min %d, max %d, mean %.1f\n", minL, maxL, float64(d.NumTokens())/float64(len(lengths)))
	}
	return nil
}

func (c *indicesCmd) run(w io.Writer) error {
	low, ds, err := c.build()
	if err != nil {
		return err
	}
	defer low.Close()
	for s := gpt.Train; s <= gpt.Test; s++ {
		if ds[s] == nil {
			fmt.Fprintf(w, "%-5s  none (no sequences in this split)\n", s)
			continue
		}
		ix := ds[s].Indices()
		dir := c.Out + string(os.PathSeparator) + s.String()
		if err := gpt.WriteIndices(dir, ix); err != nil {
			return err
		}
		if ix.NumEpochs == 0 { // loaded from --data-cache-path: the derived numbers are not stored
			fmt.Fprintf(w, "%-5s  samples %d  (from the cache)  -> %s\n", s, ix.Len(), dir)
			continue
		}
		fmt.Fprintf(w, "%-5s  samples %d  epochs %d  separate_final_epoch %v  tokens/epoch %d  -> %s\n",
			s, ix.Len(), ix.NumEpochs, ix.SeparateFinalEpoch, ix.TokensPerEpoch, dir)
	}
	return nil
}
