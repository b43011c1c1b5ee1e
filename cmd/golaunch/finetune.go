package main

import (
	"context"
	"os"
	"time"

	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/train"
)

func init() {
	register("finetune", "supervised fine-tuning on instruction data (Pai-Megatron-Patch's LLama-SFT)", func(args []string) error {
		var f train.FinetuneArgs
		if done, err := parseCommand(&f, "golaunch finetune",
			"Fine-tune on {instruction, input, output} records with the Alpaca prompts, loss on the response only.\n"+
				"  golaunch --nproc-per-node 2 finetune --load CKPT --train-data-path train.json --valid-data-path valid.json \\\n"+
				"    --max-padding-length 512 --epochs 2 --micro-batch-size 1 --lr 1e-5 --patch-tokenizer-type LLamaTokenizer …\n"+
				"With --train-iters it runs that many global batches in --dataloader-type order instead (Pai's *_withGA scripts).",
			expandListFlags(args), os.Stdout); done || err != nil {
			return err
		}
		world, err := tcp.InitFromEnv(context.Background(), tcp.Options{Timeout: time.Duration(f.DistributedTimeoutMinutes) * time.Minute})
		if err != nil {
			return err
		}
		defer world.Close()
		release, err := openBackend(&f.Args)
		if err != nil {
			return err
		}
		defer release()
		if world, err = deviceWorld(&f.Args, world); err != nil {
			return err
		}
		defer world.Close() // NCCL too; closing the host world twice is harmless
		return train.Finetune(&f, world, os.Stdout)
	})
}
