// Command convert converts checkpoints between Hugging Face and Megatron-LM (torch format)
// at any tensor and pipeline parallel size, as Pai-Megatron-Patch's
// checkpoint_reshaping_and_interoperability.py / hf2mcore.py do, with the same flags:
//
//	convert --load_path llama-2-7b-hf --save_path llama-2-7b-tp2-pp2 \
//	    --target_tensor_model_parallel_size 2 --target_pipeline_model_parallel_size 2 \
//	    --target_params_dtype bf16 --megatron-format mcore
//	    → llama-2-7b-tp2-pp2/release/mp_rank_0{0,1}_00{0,1}/model_optim_rng.pt,
//	      latest_checkpointed_iteration.txt ("release"), the HF *.json and tokenizer files
//
//	convert --load_path llama-2-7b-tp2-pp2/release --save_path llama-2-7b-back \
//	    --convert_checkpoint_from_megatron_to_transformers [--hf_ckpt_path llama-2-7b-hf]
//	    → config.json, model.safetensors (or model-0000k-of-0000N.safetensors + index), tokenizer files
//
//	convert --load_path ckpt-tp1 --save_path ckpt-tp4-pp2 \
//	    --target_tensor_model_parallel_size 4 --target_pipeline_model_parallel_size 2
//	    → Megatron → Megatron resharding (the iteration number is kept)
//
// The architecture comes from config.json (Hugging Face) or the checkpoint's args
// (Megatron); --model_name is optional and only checked. Tensors stream one at a time:
// each output shard (one Megatron (TP, PP) file, or one safetensors tensor) is built from
// source tensors read on demand and released after use, so peak memory stays near one
// Megatron shard (Hugging Face output: the largest tensor), not the model.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
)

// cli holds Pai's convertor flags (underscore spellings, dash aliases) and ours.
type cli struct {
	LoadPath string `name:"load_path" aliases:"load-path" required:"" help:"Source: a Hugging Face folder (config.json + *.safetensors or pytorch_model*.bin) or a Megatron checkpoint (root with latest_checkpointed_iteration.txt, or its release/ or iter_XXXXXXX/ folder)."`
	SavePath string `name:"save_path" aliases:"save-path" required:"" help:"Target folder; must be empty or absent unless --force."`
	TargetTP int    `name:"target_tensor_model_parallel_size" aliases:"target-tensor-model-parallel-size" default:"1" help:"Tensor parallel size of the Megatron output."`
	TargetPP int    `name:"target_pipeline_model_parallel_size" aliases:"target-pipeline-model-parallel-size" default:"1" help:"Pipeline parallel size of the Megatron output."`
	TargetDP int    `name:"target_data_parallel_size" aliases:"target-data-parallel-size" default:"1" help:"Stored in args (Pai compatibility)."`

	ModelName         string `name:"model_name" aliases:"model-name" help:"Pai's model name (llama2-7b, qwen-7b, …); optional: checked against the architecture read from config.json or args, and names the Hugging Face family for Megatron → HF."`
	ExtraNumVocabs    int    `name:"extra_num_vocabs" aliases:"extra-num-vocabs" help:"Append this many rows to the word embeddings and the output layer."`
	ExtraVocabInit    string `name:"extra-vocab-init" aliases:"extra_vocab_init" default:"normal" enum:"normal,mean" help:"Values of the extra rows: N(0, 0.02) as Pai (seeded by --seed), or the mean of the existing rows."`
	Seed              uint64 `name:"seed" default:"1234" help:"Seed of the N(0, 0.02) extra vocabulary rows and of upcycled routers."`
	TargetParamsDType string `name:"target_params_dtype" aliases:"target-params-dtype" help:"Stored dtype: fp16, bf16 or fp32 (default: the source's)."`
	MG2HF             bool   `name:"convert_checkpoint_from_megatron_to_transformers" aliases:"convert-checkpoint-from-megatron-to-transformers" help:"Convert Megatron → Hugging Face."`
	MegatronFormat    string `name:"megatron-format" aliases:"megatron_format" help:"Megatron key layout written: mcore (default from Hugging Face) or legacy; Megatron → Megatron keeps the source's unless given."`
	CkptFormat        string `name:"ckpt-format" aliases:"ckpt_format" default:"torch" enum:"torch,torch_dist" help:"Megatron output format: torch (mp_rank_XX/model_optim_rng.pt per shard) or torch_dist (Megatron-Core's sharded format, its default since 0.8)."`
	TransformerImpl   string `name:"transformer-impl" aliases:"transformer_impl" help:"mcore layer spec written: transformer_engine (Pai's hf2mcore, the default from Hugging Face) or local; Megatron → Megatron keeps the source's unless given."`
	MakeVocabDivBy    int    `name:"make_vocab_size_divisible_by" aliases:"make-vocab-size-divisible-by" help:"Pad the vocabulary to a multiple of this times TP with zero rows (default: the source args' value, else 128)."`
	MaxShardSize      string `name:"max_shard_size" aliases:"max-shard-size" default:"10GB" help:"Largest safetensors shard of the Hugging Face output (save_pretrained's max_shard_size)."`
	HFCkptPath        string `name:"hf_ckpt_path" aliases:"hf-ckpt-path" help:"Megatron → HF: a Hugging Face folder whose config.json (as a base) and tokenizer files are copied."`
	MegatronPath      string `name:"megatron-path" aliases:"megatron_path" help:"Accepted for Pai compatibility; unused."`
	PrintStructure    bool   `name:"print-checkpoint-structure" aliases:"print_checkpoint_structure" help:"Print every written tensor's name, shape and dtype."`
	Force             bool   `name:"force" help:"Write into a non-empty --save_path, replacing the checkpoint files this conversion writes."`
	Progress          string `name:"progress" default:"auto" enum:"auto,bar,none" help:"Progress bar on stderr: auto shows it on a terminal."`

	// Mixture of experts (Megatron's and Pai's hf2mcore.py's names).
	NumExperts      int  `name:"num-experts" aliases:"num_experts" help:"Experts per layer. A dense source (Llama, Mistral) is upcycled as Pai's hf2mcore.py does: every expert copies the layer's MLP (or a slice of it, --num_expert_split_size), the router is N(0, 0.02) drawn from --seed; a mixture-of-experts source (Mixtral, an MoE checkpoint) must have this many."`
	MoERouterTopK   int  `name:"moe-router-topk" aliases:"moe_router_topk" help:"Experts each token is routed to (default: the source's, or Megatron's 2 when upcycling)."`
	NumExpertSplits int  `name:"num_expert_split_size" aliases:"num-expert-split-size" help:"Upcycling: cut the dense FFN into this many slices of ffn/S rows; expert e gets slice e mod S (0 or 1: whole MLP)."`
	TargetEP        int  `name:"target_expert_model_parallel_size" aliases:"target-expert-model-parallel-size" default:"1" help:"Expert-parallel size of the output (mixture-of-experts models): each rank's experts in mp_rank_XX[_YYY]_EEE, as Megatron saves them."`
	EP              int  `name:"expert-model-parallel-size" aliases:"expert_model_parallel_size" default:"1" help:"Pai's spelling of --target_expert_model_parallel_size."`
	GroupedGemm     bool `name:"moe-grouped-gemm" aliases:"moe_grouped_gemm" help:"Write the experts as Megatron's GroupedMLP (mlp.experts.weight1 and weight2) instead of SequentialMLP's local_experts; Megatron → Megatron keeps the source's layout unless this or --no-moe-grouped-gemm is given."`
	NoGroupedGemm   bool `name:"no-moe-grouped-gemm" help:"Write SequentialMLP experts from a GroupedMLP checkpoint."`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "convert:", err)
		os.Exit(1)
	}
}

// run parses args and converts; it is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) error {
	var c cli
	parser, err := kong.New(&c, kong.Name("convert"),
		kong.Description("Convert checkpoints between Hugging Face and Megatron-LM at any TP/PP (Pai-Megatron-Patch's convertor flags)."),
		kong.Writers(stdout, stderr), kong.Exit(func(int) {}))
	if err != nil {
		return err
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			_, err := parser.Parse(args)
			return err
		}
	}
	if _, err := parser.Parse(args); err != nil {
		return err
	}
	return convert(&c, stdout, stderr)
}

// convert validates the flags, opens the source and writes the target.
func convert(c *cli, stdout, stderr io.Writer) error {
	if c.TargetTP < 1 || c.TargetPP < 1 {
		return fmt.Errorf("--target_tensor_model_parallel_size %d and --target_pipeline_model_parallel_size %d must be ≥ 1", c.TargetTP, c.TargetPP)
	}
	if c.ExtraNumVocabs < 0 {
		return fmt.Errorf("--extra_num_vocabs %d must be ≥ 0", c.ExtraNumVocabs)
	}
	if err := checkTarget(c.SavePath, c.Force); err != nil {
		return err
	}
	src, err := openSource(c.LoadPath, c.ModelName)
	if err != nil {
		return err
	}
	defer src.close()
	dropped := 0
	if hs, ok := src.(*hfSource); ok {
		dropped = hs.r.Dropped
	}
	if src, err = moeSource(c, src); err != nil {
		return err
	}
	fam := src.family()
	if ms, ok := src.(*megatronSource); ok && ms.c.Info.HFModelType == "" {
		fam = "" // guessed from the architecture (Qwen and Qwen2 share one): the name decides
	}
	if err := checkModelName(c.ModelName, fam); err != nil {
		return err
	}
	dtype, err := targetDType(c.TargetParamsDType, src.dtype())
	if err != nil {
		return err
	}
	// Tensors are pointer-free byte slices, so a collection is cheap; collecting at 25 %
	// growth instead of 100 % keeps the heap near the live shard instead of twice it.
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	prog := newProgress(c.Progress, stderr)
	pp := &prog
	if c.MG2HF {
		if src.kind() != "megatron" {
			return fmt.Errorf("--convert_checkpoint_from_megatron_to_transformers: --load_path %s is not a Megatron checkpoint", c.LoadPath)
		}
		err = writeHF(c, src, dtype, pp, stdout)
	} else {
		err = writeMegatron(c, src, dtype, pp, stdout)
	}
	if err != nil {
		return err
	}
	if dropped > 0 {
		fmt.Fprintf(stdout, "dropped %d tensors of the multi-token-prediction layers (num_nextn_predict_layers), which transformers does not load either\n", dropped)
	}
	fmt.Fprintf(stdout, "converted %s (%s, %s) → %s; peak RSS %s\n", c.LoadPath, src.kind(), src.family(), c.SavePath, peakRSS())
	return nil
}

// checkTarget refuses a non-empty target folder unless force.
func checkTarget(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("--save_path: %w", err)
	}
	if len(ents) > 0 && !force {
		names := make([]string, 0, 3)
		for _, e := range ents[:min(3, len(ents))] {
			names = append(names, e.Name())
		}
		return fmt.Errorf("--save_path %s is not empty (%s…); pass --force to write into it", dir, strings.Join(names, ", "))
	}
	return nil
}
