package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/nccl"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/device"
	"github.com/gomegatron/gomegatron/train"
)

func init() {
	register("pretrain", "Megatron pretraining (TP/SP/PP/DP, distributed optimizer, bf16/fp16/fp8) with Megatron's flags", func(args []string) error {
		var a train.Args
		return trainingCommand(&a, &a, "golaunch pretrain",
			"Pretrain a GPT model with Megatron-LM's arguments. Run under golaunch for several processes:\n"+
				"  golaunch --nproc-per-node 4 pretrain --tensor-model-parallel-size 2 …",
			args, func(world comm.Comm) error { return train.Pretrain(&a, world, os.Stdout) })
	})
	register("evaluate-raw", "Pai-Megatron-Patch's evaluate_megatron_llama.py: a checkpoint's loss on raw JSON samples, batch by batch", func(args []string) error {
		var a train.Args
		return trainingCommand(&a, &a, "golaunch evaluate-raw",
			"The loss of --load on the raw JSON --valid-data-path with Megatron's model flags, one pass,\n"+
				"micro-batch by micro-batch (Pai-Megatron-Patch's evaluate_megatron_llama.py / evaluate_mcore_llama.py):\n"+
				"  golaunch --nproc-per-node 2 evaluate-raw --load CKPT --valid-data-path alpaca.json --dataset LLama-Pretrain-Raw \\\n"+
				"    --max-padding-length 80 --micro-batch-size 1 --patch-tokenizer-type LLamaTokenizer --tokenizer-model … …",
			args, func(world comm.Comm) error { return train.EvaluateRaw(&a, world, os.Stdout) })
	})
}

// trainingCommand parses a training entry point's flags into cmd (whose Megatron arguments
// are a), joins the launched processes, opens the device and runs entry on the world.
func trainingCommand(cmd any, a *train.Args, name, desc string, args []string, entry func(world comm.Comm) error) error {
	if done, err := parseCommand(cmd, name, desc, expandListFlags(args), os.Stdout); done || err != nil {
		return err
	}
	world, err := tcp.InitFromEnv(context.Background(), tcp.Options{Timeout: time.Duration(a.DistributedTimeoutMinutes) * time.Minute})
	if err != nil {
		return err
	}
	defer world.Close()
	release, err := openBackend(a)
	if err != nil {
		return err
	}
	defer release()
	if world, err = deviceWorld(a, world); err != nil {
		return err
	}
	defer world.Close() // NCCL too; closing the host world twice is harmless
	return entry(world)
}

// listFlags take several words, as argparse's nargs='*' does (--data-path 0.3 a 0.7 b).
var listFlags = map[string]bool{"--data-path": true, "--train-data-path": true, "--valid-data-path": true, "--test-data-path": true, "--rampup-batch-size": true, "--profile-ranks": true,
	"--train-data": true, "--valid-data": true, "--spec": true}

// expandListFlags rewrites "--data-path w1 p1 w2 p2" into one "--data-path=x" per word, so
// the flag parser sees Megatron's multi-word flags as repeated ones.
func expandListFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if !listFlags[args[i]] {
			out = append(out, args[i])
			continue
		}
		flag := args[i]
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
			out = append(out, flag+"="+args[i])
		}
	}
	return out
}

// openBackend opens --device for a training command: the GPU LOCAL_RANK under golaunch.
// bf16/fp16 runs get TF32 for the GEMMs left in F32 and bf16 flash attention, as Megatron's
// bf16 runs compute attention in bf16.
func openBackend(a *train.Args) (func(), error) {
	half := a.BF16 || a.FP16
	be, release, err := device.Open(device.Options{Name: a.Device, Index: device.LocalRank(), TF32: half, FlashAttention: half})
	if err != nil {
		return nil, err
	}
	a.Backend = be
	return release, nil
}

// deviceWorld joins NCCL beside the host world for a multi-GPU run with
// --distributed-backend nccl: GPU tensors then go through NCCL and host tensors (losses,
// norms, checkpoints) through comm/tcp. With gloo, or one rank, the host world serves
// (train stages GPU tensors through host memory where needed).
func deviceWorld(a *train.Args, world comm.Comm) (comm.Comm, error) {
	g, ok := a.Backend.(*cuda.Backend)
	if !ok || world.Size() == 1 || a.DistributedBackend != "nccl" {
		return world, nil
	}
	nw, err := nccl.InitFromEnv(context.Background(), g.GPU(), nccl.Options{})
	if err != nil {
		return nil, fmt.Errorf("--distributed-backend nccl: %w (--distributed-backend gloo uses host collectives instead)", err)
	}
	return comm.Hybrid(world, nw, g.Device())
}
