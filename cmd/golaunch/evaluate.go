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
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

func init() {
	register("evaluate", "forward loss of a model on token ids (Hugging Face directory)", func(args []string) error {
		return runEvaluate(args, os.Stdout)
	})
}

type evaluateCmd struct {
	Load       string `name:"load" required:"" help:"Hugging Face model directory (config.json + *.safetensors)." type:"path"`
	Tokens     string `name:"tokens" required:"" help:"Token ids: a JSON list of lists, or a safetensors file with an integer tensor input_ids [B, T]." type:"path"`
	DumpLogits string `name:"dump-logits" help:"Write the logits to this safetensors file (logits [B, T, V], or logits.<i> per sequence when lengths differ)." type:"path"`
	JSON       bool   `name:"json" help:"Print {\"loss\": …, \"per_sequence\": […]} instead of text."`
}

// runEvaluate prints the mean next-token cross entropy per sequence and overall: Hugging
// Face's shifted loss, logits at t predicting token t+1, averaged over every predicted token.
func runEvaluate(args []string, stdout io.Writer) error {
	var cmd evaluateCmd
	if done, err := parseCommand(&cmd, "golaunch evaluate",
		"Evaluate the next-token loss of a Hugging Face checkpoint on given token ids.", args, stdout); done || err != nil {
		return err
	}
	be := cpu.New()
	m, gm, err := hf.Load(be, cmd.Load)
	if err != nil {
		return err
	}
	seqs, err := readTokens(cmd.Tokens)
	if err != nil {
		return err
	}
	vocab := m.Config.PaddedVocabSize
	var total, count float64
	per := make([]float64, len(seqs))
	logits := make([][]float32, len(seqs))
	for i, ids := range seqs {
		if len(ids) < 2 {
			return fmt.Errorf("%s: sequence %d has %d tokens; a loss needs at least 2", cmd.Tokens, i, len(ids))
		}
		for j, id := range ids {
			if id < 0 || id >= int64(m.Config.VocabSize) {
				return fmt.Errorf("%s: sequence %d position %d: token id %d is outside the vocabulary of %d", cmd.Tokens, i, j, id, m.Config.VocabSize)
			}
		}
		if m.Config.PositionEmbeddingType == "learned_absolute" && len(ids) > m.Config.MaxPositionEmbeddings {
			return fmt.Errorf("%s: sequence %d has %d tokens, more than the model's %d positions", cmd.Tokens, i, len(ids), m.Config.MaxPositionEmbeddings)
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
			logits[i] = append([]float32(nil), st.Logits.F32()[:len(ids)*vocab]...)
		}
	}
	loss := total / count
	if cmd.DumpLogits != "" {
		if err := dumpLogits(cmd.DumpLogits, logits, vocab); err != nil {
			return err
		}
	}
	if cmd.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"loss": loss, "per_sequence": per})
	}
	for i, l := range per {
		fmt.Fprintf(stdout, "sequence %d: loss %.6f (%d tokens)\n", i, l, len(seqs[i])-1)
	}
	fmt.Fprintf(stdout, "loss: %.6f over %d tokens (%s, %s)\n", loss, int(count), filepath.Base(cmd.Load), m.Family)
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
