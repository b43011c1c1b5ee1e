package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/tensor"
)

// hfOut is one planned Hugging Face tensor: its name, shape, and the rule producing it.
type hfOut struct {
	name  string
	shape []int
	rule  hf.Rule
	part  int // index into rule.HF
}

// writeHF writes the Megatron source as a Hugging Face folder: config.json (from the
// family's template over the base config.json of --hf_ckpt_path or the checkpoint root),
// the weights as safetensors sharded like save_pretrained (max_shard_size, index when
// several), and the tokenizer files of --hf_ckpt_path or the checkpoint root. Every
// tensor is computed from the joined Megatron shards and streamed into its file.
func writeHF(c *cli, src source, dtype tensor.DType, prog *progress, stdout io.Writer) error {
	ms := megatronOf(src)
	scfg := src.config()
	family := src.family()
	if c.ModelName != "" {
		family, _ = familyOfModelName(c.ModelName)
	}
	family = withExperts(family, scfg.NumExperts)
	cfg := scfg
	cfg.VocabSize = scfg.VocabSize + c.ExtraNumVocabs
	cfg.PaddedVocabSize = cfg.VocabSize
	cfg.TensorModelParallelSize = 1
	vp := &vocabPlan{srcVocab: scfg.VocabSize, srcRows: scfg.PaddedVocabSize, vocab: cfg.VocabSize,
		rows: cfg.VocabSize, init: c.ExtraVocabInit, seed: c.Seed}

	auxDir := c.HFCkptPath
	if auxDir == "" {
		auxDir = ms.c.Root
	}
	base, err := readJSONMap(filepath.Join(auxDir, "config.json"))
	if err != nil {
		return err
	}
	conf, err := hf.ConfigJSON(hf.Family(family), &cfg, dtype, base)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.SavePath, 0o755); err != nil {
		return err
	}
	if c.Force {
		if err := clearHFTarget(c.SavePath); err != nil {
			return err
		}
	}
	if err := copyTokenizerFiles(auxDir, c.SavePath, false); err != nil {
		return err
	}
	hm, err := hf.WriteConfig(c.SavePath, conf, &cfg)
	if err != nil {
		return err
	}
	rules, err := hm.Rules()
	if err != nil {
		return err
	}
	shapes, err := fullShapes(cfg)
	if err != nil {
		return err
	}
	// Hugging Face's state-dict order: embeddings first, then layers, final norm and head.
	var outs, emb []hfOut
	for _, r := range rules {
		for i, name := range r.HF {
			o := hfOut{name: name, shape: hm.HFShapes(r, shapes[r.Megatron])[i], rule: r, part: i}
			if strings.HasPrefix(r.Megatron, "embedding.") {
				emb = append(emb, o)
			} else {
				outs = append(outs, o)
			}
		}
	}
	outs = append(emb, outs...)
	maxShard, err := parseSize(c.MaxShardSize)
	if err != nil {
		return err
	}
	prog.start(len(outs), "tensors")
	// The tensors of one rule are produced together; keep the other parts until written.
	pending := map[string]*tensor.Tensor{}
	produce := func(o hfOut) (*tensor.Tensor, error) {
		prog.add(1)
		if t, ok := pending[o.name]; ok {
			delete(pending, o.name)
			return t, nil
		}
		vals, shape, err := src.full(o.rule.Megatron)
		if err != nil {
			return nil, err
		}
		if vals, shape, err = vp.apply(o.rule.Megatron, vals, shape); err != nil {
			return nil, err
		}
		parts, err := hm.ToHF(o.rule, vals, shape)
		if err != nil {
			return nil, err
		}
		var mine *tensor.Tensor
		planned := hm.HFShapes(o.rule, shape)
		for i, p := range parts {
			want := planned[i]
			if !tensor.SameShape(p.Shape(), want) {
				return nil, fmt.Errorf("internal: %s has shape %v, planned %v", o.rule.HF[i], p.Shape(), want)
			}
			t := tensor.FromF32Values(hf.StoredDType(o.rule.HF[i], dtype), p.F32(), p.Shape()...)
			if i == o.part {
				mine = t
			} else {
				pending[o.rule.HF[i]] = t
			}
		}
		return mine, nil
	}
	if err := writeSafetensorsStreaming(c.SavePath, outs, dtype, maxShard, produce); err != nil {
		return err
	}
	prog.finish()
	if c.PrintStructure {
		for _, o := range outs {
			fmt.Fprintf(stdout, "  %s %v %v\n", o.name, o.shape, hf.StoredDType(o.name, dtype))
		}
	}
	return nil
}

// clearHFTarget removes the weight files a previous conversion left (--force).
func clearHFTarget(dir string) error {
	for _, pat := range []string{"model*.safetensors", safetensors.IndexFile} {
		ms, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, m := range ms {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("--force: %w", err)
			}
		}
	}
	return nil
}

// parseSize reads save_pretrained's max_shard_size: an integer byte count or a number
// with a unit (KB/MB/GB = powers of 1000, KiB/MiB/GiB = powers of 1024).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	u := strings.ToUpper(strings.TrimSpace(s))
	mul := int64(1)
	for _, x := range units {
		if strings.HasSuffix(u, x.suffix) {
			u, mul = strings.TrimSpace(strings.TrimSuffix(u, x.suffix)), x.mul
			break
		}
	}
	var n float64
	if _, err := fmt.Sscanf(u, "%g", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("--max_shard_size %q: want a size such as 10GB or 500MB", s)
	}
	return int64(n * float64(mul)), nil
}

// readJSONMap reads a JSON object file; a missing file gives nil.
func readJSONMap(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
