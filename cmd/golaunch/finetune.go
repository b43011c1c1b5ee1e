package main

import (
	"os"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/train"
)

func init() {
	register("finetune", "supervised fine-tuning on instruction data (Pai-Megatron-Patch's LLama-SFT)", func(args []string) error {
		var f train.FinetuneArgs
		return trainingCommand(&f, &f.Args, "golaunch finetune",
			"Fine-tune on {instruction, input, output} records with the Alpaca prompts, loss on the response only.\n"+
				"  golaunch --nproc-per-node 2 finetune --load CKPT --train-data-path train.json --valid-data-path valid.json \\\n"+
				"    --max-padding-length 512 --epochs 2 --micro-batch-size 1 --lr 1e-5 --patch-tokenizer-type LLamaTokenizer …\n"+
				"With --train-iters it runs that many global batches in --dataloader-type order instead (Pai's *_withGA scripts).",
			args, func(world comm.Comm) error { return train.Finetune(&f, world, os.Stdout) })
	})
}
