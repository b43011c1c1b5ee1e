package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// writeMegatron writes the source as a Megatron checkpoint with the target TP and PP: for
// every (pp, tp) shard in turn, the shard file is streamed (shardWriter): while it is
// written, each parameter's full tensor is read from the source, resized if it is
// vocabulary-indexed, cut to the shard (layers.Shard: whole query groups for linear_qkv,
// [gate_r; up_r] for SwiGLU fc1, columns for row-parallel weights), cast to the target
// dtype and written as its own storage, then dropped; memory holds about one tensor.
// Hugging Face sources give release/ (tracker "release", as Pai's convertor); Megatron
// sources keep their iteration.
func writeMegatron(c *cli, src source, dtype tensor.DType, prog *progress, stdout io.Writer) error {
	w, stages, total, err := planMegatron(c, src, dtype, prog, stdout)
	if err != nil {
		return err
	}
	if c.Force {
		if err := clearMegatronTarget(w.loc); err != nil {
			return err
		}
	}
	prog.start(total, "tensors")
	if c.CkptFormat == "torch_dist" {
		if err := w.writeDist(stages); err != nil {
			return err
		}
	} else {
		for e := range stages {
			for pp := range stages[e] {
				for tp, specs := range stages[e][pp] {
					if err := w.write(e, tp, pp, specs); err != nil {
						return err
					}
				}
			}
		}
	}
	prog.finish()
	if err := copyAuxFiles(c.LoadPath, c.SavePath, src.kind() == "hf"); err != nil {
		return err
	}
	return megatron.WriteTracker(w.loc)
}

// planMegatron works out the target model (vocabulary padding, layout, args, location)
// and every shard's parameters, stages[ep][pp][tp], with their total count.
func planMegatron(c *cli, src source, dtype tensor.DType, prog *progress, stdout io.Writer) (*shardWriter, [][][]layers.Params, int, error) {
	scfg := src.config()
	format, err := targetFormat(c, src)
	if err != nil {
		return nil, nil, 0, err
	}
	if format == megatron.Legacy && scfg.NumExperts > 0 {
		return nil, nil, 0, fmt.Errorf("--megatron-format legacy: a mixture-of-experts model (%d experts) has Megatron-Core keys only; write mcore", scfg.NumExperts)
	}
	if scfg.MultiLatentAttention {
		// Transformer Engine's MLA spec holds the down projections whole on every TP rank
		// (duplicated TELinear); the local spec's ColumnParallelLinear is what runs here.
		switch {
		case format == megatron.Legacy:
			return nil, nil, 0, fmt.Errorf("--megatron-format legacy: multi-latent attention has Megatron-Core keys only; write mcore")
		case format == megatron.MCoreTE && c.TransformerImpl == "transformer_engine":
			return nil, nil, 0, fmt.Errorf("--transformer-impl transformer_engine: multi-latent attention is written with the local spec's layout (its down projections column-parallel); pass --transformer-impl local")
		case format == megatron.MCoreTE:
			format = megatron.MCore
		}
	}
	cfg := scfg
	switch {
	case c.GroupedGemm && c.NoGroupedGemm:
		return nil, nil, 0, fmt.Errorf("--moe-grouped-gemm and --no-moe-grouped-gemm are exclusive")
	case c.GroupedGemm && cfg.NumExperts == 0:
		return nil, nil, 0, fmt.Errorf("--moe-grouped-gemm: %s is a dense model (pass --num-experts to upcycle it)", c.LoadPath)
	case c.GroupedGemm, c.NoGroupedGemm:
		cfg.MoEGroupedGemm = c.GroupedGemm
	}
	cfg.TensorModelParallelSize = c.TargetTP
	cfg.MakeVocabSizeDivisibleBy = c.MakeVocabDivBy
	if cfg.MakeVocabSizeDivisibleBy == 0 {
		cfg.MakeVocabSizeDivisibleBy = 128
		if ms := megatronOf(src); ms != nil {
			cfg.MakeVocabSizeDivisibleBy = ms.c.Config.MakeVocabSizeDivisibleBy
		}
	}
	cfg.VocabSize = scfg.VocabSize + c.ExtraNumVocabs
	cfg.PaddedVocabSize = layers.PaddedVocab(cfg.VocabSize, cfg.MakeVocabSizeDivisibleBy, c.TargetTP)
	if cfg.NumLayers%c.TargetPP != 0 {
		return nil, nil, 0, fmt.Errorf("--target_pipeline_model_parallel_size %d does not divide num_layers %d", c.TargetPP, cfg.NumLayers)
	}
	if err := cfg.Finalize(); err != nil {
		return nil, nil, 0, fmt.Errorf("target TP %d: %w", c.TargetTP, err)
	}
	vp := &vocabPlan{srcVocab: scfg.VocabSize, srcRows: scfg.PaddedVocabSize, vocab: cfg.VocabSize,
		rows: cfg.PaddedVocabSize, init: c.ExtraVocabInit, seed: c.Seed}

	loc := megatron.Location{Root: c.SavePath, Release: true}
	var srcArgs *torchpickle.Namespace
	if ms := megatronOf(src); ms != nil {
		loc.Iteration, loc.Release = ms.c.Iteration, ms.c.Release
		srcArgs = ms.c.Args
	}
	args := megatron.Args(cfg, c.TargetTP, c.TargetPP, dtype, format, src.family())
	args.Set("data_parallel_size", c.TargetDP)
	args.Set("world_size", c.TargetTP*c.TargetPP*c.TargetDP)
	if srcArgs != nil {
		args = mergeArgs(srcArgs, args)
	}
	if c.CkptFormat == "torch_dist" {
		if format == megatron.Legacy {
			return nil, nil, 0, fmt.Errorf("--ckpt-format torch_dist holds Megatron-Core keys only; drop --megatron-format legacy")
		}
		if cfg.MultiLatentAttention {
			return nil, nil, 0, fmt.Errorf("--ckpt-format torch_dist: multi-latent attention's torch_dist names are unchecked (Megatron builds MLA only with Transformer Engine); write --ckpt-format torch")
		}
		args.Set("ckpt_format", c.CkptFormat)
	}
	ep := c.targetEP()
	args.Set("expert_model_parallel_size", ep)
	if ep > 1 {
		loc.ExpertSize = ep
	}

	var total int
	stages := make([][][]layers.Params, ep)
	for e := range stages {
		stages[e] = make([][]layers.Params, c.TargetPP)
		for pp := range stages[e] {
			for tp := 0; tp < c.TargetTP; tp++ {
				specs, err := layers.Specs(cfg, layers.Parallel{TPRank: tp, TPSize: c.TargetTP, PPRank: pp, PPSize: c.TargetPP, EPRank: e, EPSize: ep})
				if err != nil {
					return nil, nil, 0, err
				}
				stages[e][pp] = append(stages[e][pp], specs)
				total += len(specs)
			}
		}
	}
	w := &shardWriter{c: c, src: src, vp: vp, loc: loc, args: args, format: format, cfg: cfg, dtype: dtype,
		prog: prog, stdout: stdout, zero: make([]byte, maxParamBytes(stages, dtype))}
	return w, stages, total, nil
}

// targetFormat picks the written layout from --megatron-format and --transformer-impl,
// defaulting to mcore with the Transformer Engine spec (Pai's hf2mcore) for Hugging Face
// sources and to the source's layout for Megatron ones.
func targetFormat(c *cli, src source) (megatron.Format, error) {
	def := megatron.MCoreTE
	if ms := megatronOf(src); ms != nil {
		def = ms.c.Format
	}
	f := def
	switch c.MegatronFormat {
	case "":
	case "legacy":
		f = megatron.Legacy
	case "mcore":
		if def == megatron.Legacy {
			f = megatron.MCoreTE
		}
	default:
		return 0, fmt.Errorf("--megatron-format %q: want legacy or mcore", c.MegatronFormat)
	}
	switch c.TransformerImpl {
	case "":
	case "local", "transformer_engine":
		if f == megatron.Legacy {
			return 0, fmt.Errorf("--transformer-impl applies to --megatron-format mcore only")
		}
		f = megatron.MCore
		if c.TransformerImpl == "transformer_engine" {
			f = megatron.MCoreTE
		}
	default:
		return 0, fmt.Errorf("--transformer-impl %q: want local or transformer_engine", c.TransformerImpl)
	}
	return f, nil
}

// mergeArgs keeps the source args (training settings, consumed samples, …) and
// overrides the architecture and layout entries with the target's.
func mergeArgs(src, target *torchpickle.Namespace) *torchpickle.Namespace {
	out := torchpickle.NewNamespace()
	out.Class = src.Class
	for i, k := range src.Attrs.Keys {
		out.Attrs.Set(k, src.Attrs.Values[i])
	}
	for i, k := range target.Attrs.Keys {
		out.Attrs.Set(k, target.Attrs.Values[i])
	}
	return out
}

// clearMegatronTarget removes what this conversion writes (the iteration folder and the
// tracker) so that no stale shard of a previous layout survives next to the new ones.
func clearMegatronTarget(loc megatron.Location) error {
	if err := os.RemoveAll(loc.Dir()); err != nil {
		return fmt.Errorf("--force: %w", err)
	}
	if err := os.Remove(filepath.Join(loc.Root, megatron.TrackerFile)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("--force: %w", err)
	}
	return nil
}

// copyAuxFiles copies a Hugging Face folder's JSON and tokenizer files next to the
// Megatron checkpoint (Pai copies *.json and tokenizer* so that training can load the
// tokenizer from --load and mg2hf finds config.json), or into a Hugging Face output.
func copyAuxFiles(from, to string, fromHF bool) error {
	if !fromHF {
		return nil
	}
	return copyTokenizerFiles(from, to, true)
}

// copyTokenizerFiles copies tokenizer, config and remote-code (*.py) files, not weights,
// from one folder to another; withConfig includes config.json.
func copyTokenizerFiles(from, to string, withConfig bool) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".safetensors") || strings.HasSuffix(n, ".bin") ||
			n == "model.safetensors.index.json" || n == "pytorch_model.bin.index.json" || (n == "config.json" && !withConfig) {
			continue
		}
		if !(strings.HasSuffix(n, ".json") || strings.HasPrefix(n, "tokenizer") || strings.HasSuffix(n, ".model") ||
			strings.HasSuffix(n, ".tiktoken") || n == "merges.txt" || n == "vocab.txt" ||
			strings.HasSuffix(n, ".py")) { // remote code (Baichuan's), as save_pretrained keeps it
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(to, n), b); err != nil {
			return fmt.Errorf("copying %s: %w", n, err)
		}
	}
	return nil
}

// printShard lists a written shard's keys (--print-checkpoint-structure).
func printShard(w io.Writer, path string, f megatron.Format, specs layers.Params, dt tensor.DType) {
	fmt.Fprintln(w, path)
	for _, p := range specs {
		kp, _ := megatron.ParamKeyPath(f, p)
		fmt.Fprintf(w, "  %s %v %v\n", strings.Join(kp, "."), p.Shape, dt)
	}
}
