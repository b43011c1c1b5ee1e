package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/generate"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/device"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

func init() {
	register("evaluate", "per-sample loss and perplexity of an HF or Megatron checkpoint on ids, .bin/.idx or jsonl", func(args []string) error {
		return runEvaluate(args, os.Stdout)
	})
}

type evaluateCmd struct {
	Load           string   `name:"load" required:"" help:"Hugging Face model directory (config.json + *.safetensors) or Megatron checkpoint (any TP/PP)." type:"path"`
	Tokens         string   `name:"tokens" help:"Token ids: a JSON list of lists, or a safetensors file with an integer tensor input_ids [B, T]." type:"path"`
	DataPath       string   `name:"data-path" help:"A Megatron .bin/.idx prefix: each document (cut to --seq-length) is one sample."`
	JSONL          string   `name:"jsonl" help:"A jsonl file of texts (--json-keys), tokenized with the tokenizer flags." type:"path"`
	JSONKeys       []string `name:"json-keys" default:"text" help:"Keys of the texts in --jsonl."`
	SeqLength      int      `name:"seq-length" help:"Cut samples to this many tokens (default: the learned positions' maximum)."`
	MaxSamples     int      `name:"max-samples" help:"Evaluate at most this many samples."`
	TokenizerType  string   `name:"tokenizer-type" help:"Tokenizer for --jsonl (default: the model directory's tokenizer.json)."`
	TokenizerModel string   `name:"tokenizer-model" help:"Tokenizer file or directory for --jsonl." type:"path"`
	DumpLogits     string   `name:"dump-logits" help:"Write the logits to this safetensors file (logits [B, T, V], or logits.<i> per sequence when lengths differ)." type:"path"`
	JSON           bool     `name:"json" help:"Print {\"loss\": …, \"ppl\": …, \"per_sequence\": […]} instead of text."`
	Device         string   `name:"device" default:"auto" enum:"auto,cpu,cuda" help:"Compute device: cuda (GPU LOCAL_RANK), cpu, or auto (cuda when a GPU and its libraries are found); fp32 either way."`
	TP             int      `name:"tensor-model-parallel-size" default:"1" help:"Tensor-parallel size (= the processes under golaunch --nproc-per-node): each rank reads and holds only its shard."`
}

// runEvaluate prints the mean next-token cross entropy per sequence and overall: Hugging
// Face's shifted loss, logits at t predicting token t+1, averaged over every predicted token.
func runEvaluate(args []string, stdout io.Writer) error {
	var cmd evaluateCmd
	if done, err := parseCommand(&cmd, "golaunch evaluate",
		"Per-sample next-token loss and perplexity of a Hugging Face directory or Megatron checkpoint\n"+
			"on token ids (--tokens), a .bin/.idx dataset (--data-path) or texts (--jsonl).", args, stdout); done || err != nil {
		return err
	}
	world, err := tcp.InitFromEnv(context.Background(), tcp.Options{})
	if err != nil {
		return err
	}
	defer world.Close()
	if cmd.TP != world.Size() {
		return fmt.Errorf("--tensor-model-parallel-size %d, but %d processes were launched (golaunch --nproc-per-node %d)", cmd.TP, world.Size(), cmd.TP)
	}
	if world.Rank() != 0 {
		stdout = io.Discard // every rank computes the same losses; rank 0 reports
	}
	be, release, err := device.Open(device.Options{Name: cmd.Device, Index: device.LocalRank()})
	if err != nil {
		return err
	}
	defer release()
	var gm *layers.GPTModel
	var family string
	if world.Size() == 1 {
		gm, family, err = loadAnyModel(be, cmd.Load)
	} else {
		par := layers.Parallel{TP: world}
		if !comm.Carries(world, be.Device()) {
			par.TP = comm.Staged(world, be) // TP collectives of GPU activations through the host
		}
		var src generate.Source
		gm, src, err = generate.Load(be, cmd.Load, par)
		family = src.Family
		if src.Kind == "megatron" {
			family = "megatron"
		}
	}
	if err != nil {
		return err
	}
	gm.Eval()
	seqs, err := cmd.samples(gm.Cfg)
	if err != nil {
		return err
	}
	cfg := gm.Cfg
	vocab := cfg.PaddedVocabSize
	source := cmd.Tokens + cmd.DataPath + cmd.JSONL // exactly one is set
	var total, count float64
	per := make([]float64, len(seqs))
	logits := make([][]float32, len(seqs))
	for i, ids := range seqs {
		if len(ids) < 2 {
			return fmt.Errorf("%s: sequence %d has %d tokens; a loss needs at least 2", source, i, len(ids))
		}
		for j, id := range ids {
			if id < 0 || id >= int64(cfg.VocabSize) {
				return fmt.Errorf("%s: sequence %d position %d: token id %d is outside the vocabulary of %d", source, i, j, id, cfg.VocabSize)
			}
		}
		if cfg.PositionEmbeddingType == "learned_absolute" && len(ids) > cfg.MaxPositionEmbeddings {
			return fmt.Errorf("%s: sequence %d has %d tokens, more than the model's %d positions", source, i, len(ids), cfg.MaxPositionEmbeddings)
		}
		st := gm.NewStash(len(ids), 1)
		bt := layers.Batch{Tokens: ids, Labels: make([]int64, len(ids)), LossMask: make([]float32, len(ids))}
		for j := 0; j+1 < len(ids); j++ {
			bt.Labels[j], bt.LossMask[j] = ids[j+1], 1
		}
		sum, n, err := gm.Forward(st, bt, 0, 0)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", i, err)
		}
		per[i] = sum / n
		total += sum
		count += n
		if cmd.DumpLogits != "" {
			h := tensor.New(tensor.F32, st.Logits.Shape()...)
			be.Download(h, st.Logits)
			full, err := gm.GatherLogits(h, len(ids), h.Numel()/len(ids))
			if err != nil {
				return fmt.Errorf("sequence %d: %w", i, err)
			}
			logits[i] = full.F32()[:len(ids)*vocab]
		}
	}
	loss := total / count
	if cmd.DumpLogits != "" && world.Rank() == 0 {
		if err := dumpLogits(cmd.DumpLogits, logits, vocab); err != nil {
			return err
		}
	}
	if cmd.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"loss": loss, "ppl": math.Exp(loss), "per_sequence": per})
	}
	for i, l := range per {
		fmt.Fprintf(stdout, "sequence %d: loss %.6f ppl %.4f (%d tokens)\n", i, l, math.Exp(l), len(seqs[i])-1)
	}
	fmt.Fprintf(stdout, "loss: %.6f, ppl: %.4f over %d tokens (%s, %s)\n", loss, math.Exp(loss), int(count), filepath.Base(cmd.Load), family)
	return nil
}

// readTokens reads a JSON list of lists or a safetensors file with input_ids.
func readTokens(path string) ([][]int64, error) {
	if strings.HasSuffix(path, ".safetensors") {
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		t, err := f.Tensor("input_ids")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if t.Rank() != 2 || (t.DType() != tensor.I64 && t.DType() != tensor.I32) {
			return nil, fmt.Errorf("%s: input_ids must be an I64 or I32 tensor [B, T], have %v", path, t)
		}
		b, s := t.Dim(0), t.Dim(1)
		out := make([][]int64, b)
		for i := range out {
			out[i] = make([]int64, s)
			for j := range out[i] {
				if t.DType() == tensor.I64 {
					out[i][j] = t.I64()[i*s+j]
				} else {
					out[i][j] = int64(t.I32()[i*s+j])
				}
			}
		}
		return out, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]int64
	if err := json.Unmarshal(raw, &out); err != nil {
		var obj struct {
			InputIDs [][]int64 `json:"input_ids"`
		}
		if err2 := json.Unmarshal(raw, &obj); err2 != nil || obj.InputIDs == nil {
			return nil, fmt.Errorf("%s: want a JSON list of lists of token ids (or {\"input_ids\": [[…]]}): %w", path, err)
		}
		out = obj.InputIDs
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no sequences", path)
	}
	return out, nil
}

// dumpLogits writes logits as [B, T, V] when every sequence has the same length, else one
// tensor logits.<i> [T_i, V] per sequence.
func dumpLogits(path string, logits [][]float32, vocab int) error {
	same := true
	for _, l := range logits {
		same = same && len(l) == len(logits[0])
	}
	var named []safetensors.Named
	if same {
		all := make([]float32, 0, len(logits)*len(logits[0]))
		for _, l := range logits {
			all = append(all, l...)
		}
		named = append(named, safetensors.Named{Name: "logits", T: tensor.FromF32(all, len(logits), len(logits[0])/vocab, vocab)})
	} else {
		for i, l := range logits {
			named = append(named, safetensors.Named{Name: fmt.Sprintf("logits.%d", i), T: tensor.FromF32(l, len(l)/vocab, vocab)})
		}
	}
	return safetensors.Write(path, named, map[string]string{"format": "pt"})
}

// loadAnyModel loads a Hugging Face directory or a Megatron checkpoint as one whole model.
func loadAnyModel(be kernels.Backend, dir string) (*layers.GPTModel, string, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		m, gm, err := hf.Load(be, dir)
		if err != nil {
			return nil, "", err
		}
		return gm, string(m.Family), nil
	}
	gm, info, err := megatron.LoadModel(be, dir)
	if err != nil {
		return nil, "", fmt.Errorf("--load %s is neither a Hugging Face directory (no config.json) nor a readable Megatron checkpoint: %w", dir, err)
	}
	fam := "megatron"
	if info.HFModelType != "" {
		fam += " " + info.HFModelType
	}
	return gm, fam, nil
}

// samples reads the evaluation samples from exactly one of --tokens, --data-path, --jsonl.
func (cmd *evaluateCmd) samples(cfg layers.Config) ([][]int64, error) {
	given := 0
	for _, s := range []string{cmd.Tokens, cmd.DataPath, cmd.JSONL} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return nil, fmt.Errorf("give exactly one of --tokens, --data-path and --jsonl")
	}
	limit := cmd.SeqLength
	if limit == 0 && cfg.PositionEmbeddingType == "learned_absolute" {
		limit = cfg.MaxPositionEmbeddings
	}
	var seqs [][]int64
	switch {
	case cmd.Tokens != "":
		var err error
		if seqs, err = readTokens(cmd.Tokens); err != nil {
			return nil, err
		}
	case cmd.DataPath != "":
		ds, err := indexed.Open(cmd.DataPath)
		if err != nil {
			return nil, err
		}
		defer ds.Close()
		for d := 0; d < ds.NumDocuments() && (cmd.MaxSamples == 0 || len(seqs) < cmd.MaxSamples); d++ {
			doc, err := ds.Document(d)
			if err != nil {
				return nil, err
			}
			if len(doc) >= 2 {
				seqs = append(seqs, doc)
			}
		}
	default:
		tcfg := tokenizer.Config{TokenizerType: cmd.TokenizerType, TokenizerModel: cmd.TokenizerModel}
		if tcfg.TokenizerType == "" {
			tcfg = tokenizer.Config{TokenizerType: "HuggingFaceTokenizer", TokenizerModel: cmd.Load}
		}
		tok, err := tokenizer.Build(tcfg)
		if err != nil {
			return nil, fmt.Errorf("--jsonl needs a tokenizer (--tokenizer-type/--tokenizer-model, or tokenizer.json in --load): %w", err)
		}
		texts, err := readJSONL(cmd.JSONL, cmd.JSONKeys)
		if err != nil {
			return nil, err
		}
		for _, t := range texts {
			ids := tok.Encode(t)
			s := make([]int64, len(ids))
			for i, id := range ids {
				s[i] = int64(id)
			}
			if len(s) >= 2 {
				seqs = append(seqs, s)
			}
		}
	}
	if cmd.MaxSamples > 0 && len(seqs) > cmd.MaxSamples {
		seqs = seqs[:cmd.MaxSamples]
	}
	for i := range seqs {
		if limit > 0 && len(seqs[i]) > limit {
			seqs[i] = seqs[i][:limit]
		}
	}
	if len(seqs) == 0 {
		return nil, fmt.Errorf("no sample with at least 2 tokens")
	}
	return seqs, nil
}

// readJSONL returns the texts under keys of every line of a jsonl file.
func readJSONL(path string, keys []string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for n, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		for _, k := range keys {
			if s, ok := rec[k].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out, nil
}
