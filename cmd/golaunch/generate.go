package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/generate"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/device"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
	"github.com/gomegatron/gomegatron/train"
)

func init() {
	register("generate", "text generation (Pai-Megatron-Patch's generate_text_megatron_llama.py flags), TP under golaunch", func(args []string) error {
		return runGenerate(args, os.Stdout)
	})
}

// generateCmd are the flags run_text_generation_megatron_llama.sh passes, plus --prompt
// and --hf-repetition-penalty. With --load the checkpoint's architecture is used and the
// shape flags given are checked against it; without --load the model is built from the
// flags with random weights (--seed).
type generateCmd struct {
	layers.Config

	Load                      string `name:"load" help:"Megatron checkpoint (any TP it was saved with) or Hugging Face directory."`
	TensorModelParallelSize   int    `name:"tensor-model-parallel-size" default:"1" help:"Tensor-parallel size (= the number of processes under golaunch --nproc-per-node)."`
	PipelineModelParallelSize int    `name:"pipeline-model-parallel-size" default:"1" help:"Must be 1: generation runs the whole model on every TP rank."`

	TokenizerType      string `name:"tokenizer-type" help:"Megatron tokenizer class (HuggingFaceTokenizer, Llama2Tokenizer, GPT2BPETokenizer, NullTokenizer, …)."`
	TokenizerModel     string `name:"tokenizer-model" help:"Tokenizer file or directory (default for Hugging Face tokenizers: the --load folder)."`
	VocabFile          string `name:"vocab-file" help:"Vocabulary file (GPT2BPETokenizer)."`
	MergeFile          string `name:"merge-file" help:"BPE merges file (GPT2BPETokenizer)."`
	PatchTokenizerType string `name:"patch-tokenizer-type" help:"Pai: tokenizer; LLamaTokenizer = the Hugging Face tokenizer (tokenizer.json) in --load or --tokenizer-model."`

	MicroBatchSize      int      `name:"micro-batch-size" default:"1" help:"Prompts decoded together."`
	TopK                int      `name:"top-k" default:"0" help:"Top-k sampling (0: off; 1: greedy). --top-k or --top-p must be 0."`
	TopP                float64  `name:"top-p" default:"0.0" help:"Top-p (nucleus) sampling (0: off)."`
	Temperature         float64  `name:"temperature" default:"1.0" help:"Sampling temperature."`
	RepetitionPenalty   float64  `name:"repetition-penalty" default:"1.2" help:"Pai's repetition penalty: logits of ids already in the sequence are divided by it (1: off)."`
	HFRepetitionPenalty bool     `name:"hf-repetition-penalty" help:"Apply the penalty as Hugging Face does (negative logits multiplied) instead of Pai's plain division."`
	Greedy              bool     `name:"greedy" help:"Greedy decoding (same as --top-k 1 --top-p 0)."`
	OutSeqLength        int      `name:"out-seq-length" default:"1024" help:"Tokens to generate after the longest prompt of a batch."`
	InputLen            int      `name:"input-len" default:"1" help:"Accepted (Pai's predictor does not use it)."`
	InputFile           string   `name:"text-generate-input-file" help:"JSON lines with a \"query\" each; the query is cut to --seq-length characters."`
	OutputFile          string   `name:"text-generate-output-file" help:"One line per prompt: prompt + generation, '<|endoftext|>' removed."`
	Prompt              []string `name:"prompt" help:"A prompt (repeatable), instead of --text-generate-input-file; results go to stdout unless --text-generate-output-file is set." sep:"none"`
	Seed                int      `name:"seed" default:"1234" help:"Random seed of the sampler (and of the weights without --load)."`
	EOSID               int      `name:"eos-id" default:"-1" help:"Termination id (default: the tokenizer's eod)."`
	MaxTokensToOOM      int      `name:"max-tokens-to-oom" default:"12000" help:"Megatron's bound on micro-batch-size × (prompt + generation) tokens."`

	// Accepted for the scripts' sake; they change nothing at inference.
	NoLoadOptim         bool   `name:"no-load-optim" help:"Accepted (no optimizer is loaded)."`
	NoLoadRNG           bool   `name:"no-load-rng" help:"Accepted (no RNG state is loaded)."`
	UseCheckpointArgs   bool   `name:"use-checkpoint-args" help:"Accepted: with --load the checkpoint's architecture is used anyway (flags given are checked against it)."`
	UseDistOpt          bool   `name:"use-distributed-optimizer" help:"Accepted."`
	SequenceParallel    bool   `name:"sequence-parallel" help:"Accepted (inference all-reduces whole sequences)."`
	FP16                bool   `name:"fp16" help:"On a GPU, GEMMs on fp16 weights and activations; else accepted (fp32)."`
	BF16                bool   `name:"bf16" help:"On a GPU, GEMMs on bf16 weights and activations; else accepted (fp32)."`
	MaxPaddingLength    int    `name:"max-padding-length" help:"Accepted (Pai: sample length of training data)."`
	ExtraVocabSize      int    `name:"extra-vocab-size" default:"0" help:"Pai: rows appended to the tokenizer's vocabulary (for a model built without --load)."`
	UseLlama2RotaryPosE bool   `name:"use-llama2-rotary-position-embeddings" help:"Pai: same as --position-embedding-type rope."`
	UseRotaryPosE       bool   `name:"use-rotary-position-embeddings" help:"Same as --position-embedding-type rope."`
	UseAlibiMask        bool   `name:"use-alibi-mask" help:"Pai (Baichuan 2 13B): same as --position-embedding-type alibi."`
	NoQKLayerScaling    bool   `name:"no-query-key-layer-scaling" help:"Accepted (Megatron 23.x's spelling of the default)."`
	DisableBiasLinearFC bool   `name:"disable-bias-linear-fc" help:"Pai: no MLP biases (with --disable-bias-attn-fc: Pai's Qwen model, biases on QKV only)."`
	DisableBiasAttnFC   bool   `name:"disable-bias-attn-fc" help:"Pai: no attention output bias (see --disable-bias-linear-fc)."`
	RotaryScaleFactor   int    `name:"rotary-scale-factor" default:"1" help:"Pai: RoPE positions divided by it (--rotary-seq-len-interpolation-factor); a --load checkpoint must agree."`
	UseFlashAttn        bool   `name:"use-flash-attn" help:"Accepted: attention always uses the online-softmax kernel."`
	TransformerImpl     string `name:"transformer-impl" default:"local" help:"Accepted (local or transformer_engine: the same kernels)."`
	Device              string `name:"device" default:"auto" enum:"auto,cpu,cuda" help:"Compute device: cuda (GPU LOCAL_RANK), cpu, or auto (cuda when a GPU and its libraries are found); fp32 either way."`
}

func runGenerate(args []string, stdout io.Writer) error {
	var cmd generateCmd
	if done, err := parseCommand(&cmd, "golaunch generate",
		"Generate text from a Megatron checkpoint or Hugging Face model with Pai-Megatron-Patch's flags.\n"+
			"Several processes for tensor parallelism: golaunch --nproc-per-node 2 generate --tensor-model-parallel-size 2 …",
		args, stdout); done || err != nil {
		return err
	}
	world, err := tcp.InitFromEnv(context.Background(), tcp.Options{})
	if err != nil {
		return err
	}
	defer world.Close()
	return cmd.run(world, stdout)
}

func (g *generateCmd) validate(world int) error {
	if g.PipelineModelParallelSize != 1 {
		return fmt.Errorf("--pipeline-model-parallel-size %d: generation needs the whole model on every rank (1)", g.PipelineModelParallelSize)
	}
	if g.TensorModelParallelSize != world {
		return fmt.Errorf("--tensor-model-parallel-size %d, but %d processes were launched (golaunch --nproc-per-node %d)", g.TensorModelParallelSize, world, g.TensorModelParallelSize)
	}
	if g.MicroBatchSize <= 0 {
		return fmt.Errorf("--micro-batch-size %d must be positive", g.MicroBatchSize)
	}
	if g.Greedy {
		g.TopK, g.TopP = 1, 0
	}
	if err := g.sampling().Validate(); err != nil {
		return err
	}
	if g.OutSeqLength <= 0 {
		return fmt.Errorf("--out-seq-length %d must be positive", g.OutSeqLength)
	}
	if g.RepetitionPenalty <= 0 {
		return fmt.Errorf("--repetition-penalty %v must be positive (1 is off)", g.RepetitionPenalty)
	}
	if g.InputFile == "" && len(g.Prompt) == 0 {
		return fmt.Errorf("no prompts: give --text-generate-input-file or --prompt")
	}
	if g.InputFile != "" && g.OutputFile == "" {
		return fmt.Errorf("--text-generate-input-file %s needs --text-generate-output-file", g.InputFile)
	}
	return nil
}

func (g *generateCmd) sampling() generate.Sampling {
	return generate.Sampling{TopK: g.TopK, TopP: g.TopP, Temperature: g.Temperature}
}

func (g *generateCmd) run(world comm.Comm, stdout io.Writer) error {
	if err := g.validate(world.Size()); err != nil {
		return err
	}
	prompts, err := g.readPrompts()
	if err != nil {
		return err
	}
	be, release, err := device.Open(device.Options{Name: g.Device, Index: device.LocalRank()})
	if err != nil {
		return err
	}
	defer release()
	par := layers.Parallel{}
	if world.Size() > 1 {
		par.TP = world
		if !comm.Carries(world, be.Device()) {
			par.TP = comm.Staged(world, be) // TP collectives of GPU activations through the host
		}
	}
	// With --load the checkpoint is checked first (a wrong path is the likelier mistake);
	// a model built from flags takes its vocabulary from the tokenizer.
	var m *layers.GPTModel
	if g.Load != "" {
		if m, err = g.model(be, nil, par); err != nil {
			return err
		}
	}
	tok, err := g.tokenizer()
	if err != nil {
		return err
	}
	if m == nil {
		if m, err = g.model(be, tok, par); err != nil {
			return err
		}
	}
	m.Eval() // inference: Megatron's model.eval()
	if (g.BF16 || g.FP16) && be.Device().Type != tensor.CPU {
		dt := tensor.BF16
		if g.FP16 {
			dt = tensor.F16
		}
		m.Params.SetLowPrecision(be, dt) // decoding streams the weights: half the bytes
	}
	o := generate.Options{Sampling: g.sampling(), RepetitionPenalty: g.RepetitionPenalty,
		HFRepetitionPenalty: g.HFRepetitionPenalty, OutSeqLength: g.OutSeqLength,
		EOS: int64(g.EOSID), Pad: int64(tok.EOD()), Vocab: min(tok.VocabSize(), m.Cfg.VocabSize),
		MaxPositions: g.MaxPositionEmbeddings}
	if o.EOS < 0 {
		o.EOS = int64(tok.EOD())
	}
	if o.Pad < 0 {
		o.Pad = max(o.EOS, 0)
	}
	seed := uint64(g.Seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var lines []string
	for lo := 0; lo < len(prompts); lo += g.MicroBatchSize {
		hi := min(lo+g.MicroBatchSize, len(prompts))
		ids := make([][]int64, hi-lo)
		longest := 0
		for i, p := range prompts[lo:hi] {
			for _, id := range tok.Encode(p) {
				ids[i] = append(ids[i], int64(id))
			}
			longest = max(longest, len(ids[i]))
		}
		if n := (hi - lo) * (longest + g.OutSeqLength); n > g.MaxTokensToOOM {
			return fmt.Errorf("prompts %d–%d: %d prompts × (%d + --out-seq-length %d) tokens = %d, more than --max-tokens-to-oom %d", lo, hi-1, hi-lo, longest, g.OutSeqLength, n, g.MaxTokensToOOM)
		}
		out, err := generate.Generate(m, ids, o, rng)
		if err != nil {
			return fmt.Errorf("prompts %d–%d: %w", lo, hi-1, err)
		}
		for _, row := range out {
			ints := make([]int, len(row))
			for j, id := range row {
				ints[j] = int(id)
			}
			lines = append(lines, strings.ReplaceAll(tok.Decode(ints), "<|endoftext|>", ""))
		}
	}
	if world.Rank() != 0 {
		return nil
	}
	if g.OutputFile == "" {
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		return nil
	}
	if err := writeLinesAtomic(g.OutputFile, lines); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generate: %d prompts → %s\n", len(lines), g.OutputFile)
	return nil
}

// readPrompts reads --text-generate-input-file (JSON lines, "query") and --prompt, each
// cut to --seq-length characters as Pai does (json_obj['query'][:args.seq_length]).
func (g *generateCmd) readPrompts() ([]string, error) {
	var prompts []string
	if g.InputFile != "" {
		f, err := os.Open(g.InputFile)
		if err != nil {
			return nil, fmt.Errorf("--text-generate-input-file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			var obj struct {
				Query *string `json:"query"`
			}
			if err := json.Unmarshal([]byte(text), &obj); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", g.InputFile, line, err)
			}
			if obj.Query == nil {
				return nil, fmt.Errorf("%s:%d: no \"query\" field", g.InputFile, line)
			}
			prompts = append(prompts, *obj.Query)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", g.InputFile, err)
		}
		if len(prompts) == 0 {
			return nil, fmt.Errorf("%s: no prompts", g.InputFile)
		}
	}
	prompts = append(prompts, g.Prompt...)
	if g.SeqLength > 0 {
		for i, p := range prompts {
			if r := []rune(p); len(r) > g.SeqLength {
				prompts[i] = string(r[:g.SeqLength])
			}
		}
	}
	return prompts, nil
}

// tokenizer builds --tokenizer-type (or Pai's --patch-tokenizer-type); Hugging Face
// tokenizers default to the --load folder (for a Megatron checkpoint its root, where Pai's
// converter copies the tokenizer files).
func (g *generateCmd) tokenizer() (tokenizer.Tokenizer, error) {
	typ := g.TokenizerType
	if typ == "" {
		typ = g.PatchTokenizerType
	}
	if typ == "" {
		return nil, fmt.Errorf("no tokenizer: give --tokenizer-type (or --patch-tokenizer-type)")
	}
	model := g.TokenizerModel
	if model == "" && (typ == "HuggingFaceTokenizer" || tokenizer.IsPai(typ)) && g.Load != "" {
		model = g.Load
		if loc, err := megatron.Resolve(g.Load); err == nil {
			model = loc.Root
		}
	}
	return tokenizer.Build(tokenizer.Config{TokenizerType: typ, TokenizerModel: model,
		VocabFile: g.VocabFile, MergeFile: g.MergeFile, VocabSize: g.VocabSize})
}

// positionEmbedding is --position-embedding-type as Pai's flags set it: RoPE with
// --use-llama2-rotary-position-embeddings or --use-rotary-position-embeddings, ALiBi with
// --use-alibi-mask (which wins, as in training).
func (g *generateCmd) positionEmbedding() string {
	switch {
	case g.UseAlibiMask:
		return "alibi"
	case g.UseLlama2RotaryPosE || g.UseRotaryPosE:
		return "rope"
	}
	return g.Config.PositionEmbeddingType
}

// model loads --load (checking the shape flags given against it) or builds a model from
// the flags and the tokenizer's vocabulary.
func (g *generateCmd) model(be kernels.Backend, tok tokenizer.Tokenizer, par layers.Parallel) (*layers.GPTModel, error) {
	pos := g.positionEmbedding()
	if g.Load == "" {
		cfg := g.Config
		cfg.PositionEmbeddingType = pos
		if err := train.PaiQwenBiases(&cfg, g.DisableBiasLinearFC, g.DisableBiasAttnFC); err != nil {
			return nil, err
		}
		if g.RotaryScaleFactor > 1 {
			cfg.RotarySeqLenInterpolationFactor = float64(g.RotaryScaleFactor)
		}
		// Megatron pads the tokenizer's vocabulary (Pai adds --extra-vocab-size first).
		cfg.VocabSize = tok.VocabSize() + g.ExtraVocabSize
		cfg.AttentionDropout, cfg.HiddenDropout = 0, 0
		return layers.NewParallelGPTModel(be, cfg, par, uint64(g.Seed))
	}
	m, src, err := generate.Load(be, g.Load, par)
	if err != nil {
		return nil, err
	}
	c := src.Config
	if pos != g.Config.PositionEmbeddingType && pos != c.PositionEmbeddingType { // a Pai flag names it
		return nil, fmt.Errorf("the flags ask for %s position embeddings, but %s was trained with %s", pos, g.Load, c.PositionEmbeddingType)
	}
	if f := g.RotaryScaleFactor; f > 1 && c.RotarySeqLenInterpolationFactor != float64(f) {
		return nil, fmt.Errorf("--rotary-scale-factor %d, but %s was trained with RoPE interpolation %v", f, g.Load, max(c.RotarySeqLenInterpolationFactor, 1))
	}
	for _, f := range []struct {
		flag      string
		set, have int
	}{
		{"num-layers", g.NumLayers, c.NumLayers}, {"hidden-size", g.HiddenSize, c.HiddenSize},
		{"num-attention-heads", g.NumAttentionHeads, c.NumAttentionHeads},
		{"ffn-hidden-size", g.FFNHiddenSize, c.FFNHiddenSize},
	} {
		if f.set != 0 && f.set != f.have {
			return nil, fmt.Errorf("--%s %d does not match %s, which has %d", f.flag, f.set, g.Load, f.have)
		}
	}
	if g.GroupQueryAttention && g.NumQueryGroups != c.NumQueryGroups {
		return nil, fmt.Errorf("--num-query-groups %d does not match %s, which has %d", g.NumQueryGroups, g.Load, c.NumQueryGroups)
	}
	return m, nil
}

// writeLinesAtomic writes one line per entry to path through a temporary file, fsync and
// rename.
func writeLinesAtomic(path string, lines []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("--text-generate-output-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("--text-generate-output-file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("--text-generate-output-file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--text-generate-output-file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--text-generate-output-file %s: %w", path, err)
	}
	return nil
}
