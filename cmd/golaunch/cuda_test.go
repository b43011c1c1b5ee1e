package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
)

// emulatedGPUs builds the kernel emulator (the real kernel sources run on the CPU as a CUDA
// driver) and returns the environment that shows golaunch two such "GPUs" with arenaMB of
// memory each and a CUBIN cache under dir.
func emulatedGPUs(t *testing.T, dir string, arenaMB int) []string {
	files, _, err := cuda.Sources()
	require.NoError(t, err)
	idx, err := cuda.KernelIndex(files)
	require.NoError(t, err)
	drv, libDir := dltest.Emulator(t, "../../kernels/cuda", idx)
	return []string{dl.EnvDriver + "=" + drv, "GOMEGATRON_CUDA_LIB_DIRS=" + libDir, "GM_FAKE_DEVICES=2",
		"GOMEGATRON_CUDA_ARENA_MB=" + strconv.Itoa(arenaMB), "GOMEGATRON_CUBIN_CACHE=" + filepath.Join(dir, "cubin")}
}

// TestPretrainOnEmulatedGPUs runs `golaunch pretrain --device cuda` with the kernel emulator
// as the CUDA driver (the real kernel sources on the CPU, found through the environment as
// on a GPU machine): two ranks, TP=2 with sequence parallelism, each on its own "GPU", with
// activations exchanged through host collectives (--distributed-backend gloo, comm.Staged). The losses and grad norms match the same run
// on --device cpu (to bf16 accuracy with --bf16), and the checkpoint it saves resumes on
// the CPU.
func TestPretrainOnEmulatedGPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the emulator runs every CUDA thread as a fiber")
	}
	dir := t.TempDir()
	gpuEnv := emulatedGPUs(t, dir, 256)
	data := writeCorpus(t, dir)
	args := func(device string, extra ...string) []string {
		return append(strings.Fields("--standalone --nproc-per-node 2 pretrain --tensor-model-parallel-size 2 --sequence-parallel "+
			"--num-layers 2 --hidden-size 64 --num-attention-heads 4 --group-query-attention --num-query-groups 2 "+
			"--ffn-hidden-size 128 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 2 --global-batch-size 4 "+
			"--train-iters 3 --lr 3e-3 --tokenizer-type NullTokenizer --vocab-size 255 --log-interval 1 --swiglu --normalization RMSNorm "+
			"--position-embedding-type rope --disable-bias-linear --attention-dropout 0 --hidden-dropout 0 "+
			"--split 100,0,0 --eval-iters 0 --data-cache-path "+dir+" --data-path "+data+" --device "+device+
			" --distributed-backend gloo"), extra...)
	}
	run := func(env []string, a ...string) string {
		cmd := exec.Command(golaunchBin, a...)
		cmd.Env = append(os.Environ(), append([]string{"GOLAUNCH_GRACE_PERIOD=5"}, env...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v\n%s", a, out)
		return string(out)
	}
	// NCCL is the default for GPU tensors; this machine has none, and the error says so.
	cmd := exec.Command(golaunchBin, append(args("cuda"), "--distributed-backend", "nccl")...)
	cmd.Env = append(os.Environ(), gpuEnv...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--distributed-backend nccl: comm/nccl: libnccl.so.2 not found")
	ckpt := filepath.Join(dir, "ckpt")
	tb := filepath.Join(dir, "tb")
	onGPU := run(gpuEnv, args("cuda", "--save", ckpt, "--save-interval", "3", "--tensorboard-dir", tb, "--log-memory-to-tensorboard")...)
	require.Contains(t, onGPU, "> training on cuda:1", "the last rank reports its GPU")
	// Megatron's report_memory after the first iteration, from each DP-rank-0 process.
	mem := regexp.MustCompile(`(?m)\[Rank (\d)\] \(after 1 iterations\) memory \(MB\) \| allocated: [\d.]+ \| max allocated: ([\d.]+) \| reserved: 256\.00 \| max reserved: 256\.00$`)
	ev, err := filepath.Glob(filepath.Join(tb, "events.out.tfevents.*"))
	require.NoError(t, err)
	require.Len(t, ev, 1)
	events, err := os.ReadFile(ev[0])
	require.NoError(t, err)
	for _, tag := range []string{"mem-reserved-bytes", "mem-allocated-bytes", "mem-max-allocated-bytes", "mem-allocated-count"} {
		require.Contains(t, string(events), tag, "--log-memory-to-tensorboard")
	}
	reports := mem.FindAllStringSubmatch(onGPU, -1)
	require.Len(t, reports, 2, "one memory line per TP rank\n%s", onGPU)
	for _, m := range reports {
		peak, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		require.Greater(t, peak, 0.0, "rank %s used device memory", m[1])
	}
	onCPU := run(nil, args("cpu")...)
	g, c := parseLog(t, onGPU), parseLog(t, onCPU)
	require.Len(t, g.loss, 3)
	require.Len(t, c.loss, 3)
	for i := range c.loss {
		require.InEpsilon(t, c.loss[i], g.loss[i], 1e-5, "iteration %d loss: cpu %v, emulated gpu %v", i+1, c.loss, g.loss)
		require.InEpsilon(t, c.norm[i], g.norm[i], 2e-3, "iteration %d grad norm: cpu %v, emulated gpu %v", i+1, c.norm, g.norm)
	}
	// --bf16: 16-bit weight copies and GEMM operands, BF16 activations and flash attention on
	// the "GPUs"; F32 activations on the CPU. The losses agree to bf16 accuracy.
	ck16 := filepath.Join(dir, "ckpt16")
	out16 := run(gpuEnv, append(args("cuda", "--bf16"), "--train-iters", "4", "--log-params-norm")...)
	require.Contains(t, out16, "> activations in bfloat16")
	cpu16 := run(nil, append(args("cpu", "--bf16"), "--log-params-norm")...)
	g16, c16 := parseLog(t, out16), parseLog(t, cpu16)
	// --log-params-norm over the 16-bit weights in device memory: the CPU's to bf16 accuracy.
	gp, cp := paramsNormField.FindAllStringSubmatch(out16, -1), paramsNormField.FindAllStringSubmatch(cpu16, -1)
	require.NotEmpty(t, cp)
	for i := range cp {
		g, _ := strconv.ParseFloat(gp[i][2], 64)
		c, _ := strconv.ParseFloat(cp[i][2], 64)
		require.InEpsilon(t, c, g, 1e-3, "params norm, iteration %s", cp[i][1])
	}
	require.Len(t, g16.loss, 4)
	for i := range c16.loss {
		require.InEpsilon(t, c16.loss[i], g16.loss[i], 1e-2, "bf16 iteration %d loss: cpu %v, emulated gpu %v", i+1, c16.loss, g16.loss)
	}
	// --fp16: 16-bit weights and GEMM operands in F16, F32 activations.
	fp16 := []string{"--fp16", "--loss-scale", "1"} // a constant scale: no skipped iterations to log
	g16h, c16h := parseLog(t, run(gpuEnv, append(args("cuda"), fp16...)...)), parseLog(t, run(nil, append(args("cpu"), fp16...)...))
	require.Len(t, g16h.loss, 3)
	for i := range c16h.loss {
		require.InEpsilon(t, c16h.loss[i], g16h.loss[i], 1e-2, "fp16 iteration %d loss: cpu %v, emulated gpu %v", i+1, c16h.loss, g16h.loss)
	}
	// The same run stopped after iteration 2 with a checkpoint (16-bit weights saved as F32,
	// fp32 main parameters in the optimizer state) resumes on the "GPUs" into the same
	// iterations 3 and 4.
	run(gpuEnv, append(args("cuda", "--bf16"), "--train-iters", "4", "--exit-interval", "2", "--save", ck16)...)
	r16 := parseLog(t, run(gpuEnv, append(args("cuda", "--bf16"), "--train-iters", "4", "--load", ck16)...))
	require.Equal(t, g16.loss[2:], r16.loss, "resumed bf16 losses")
	require.Equal(t, g16.norm[2:], r16.norm, "resumed bf16 grad norms")
	// The checkpoint written from device memory resumes on the CPU (one iteration longer:
	// the schedule's decay length changes, which Megatron allows only when overridden).
	resumed := run(nil, append(args("cpu", "--load", ckpt), "--train-iters", "4", "--override-opt_param-scheduler")...)
	require.Len(t, parseLog(t, resumed).loss, 1, "one more iteration after the resumed 3\n%s", resumed)

	// Offline generation and evaluation of that checkpoint on an emulated GPU give what the
	// CPU gives: the same greedy tokens, the same losses to F32 accuracy.
	gen := func(device string, env []string) string {
		out := run(env, "generate", "--device", device, "--load", ckpt, "--tokenizer-type", "NullTokenizer",
			"--vocab-size", "255", "--prompt", "1 4 7", "--prompt", "30 33", "--greedy", "--out-seq-length", "6",
			"--repetition-penalty", "1")
		var ids []string // the generated lines, without golaunch's banner
		for _, l := range strings.Split(out, "\n") {
			if l != "" && !strings.HasPrefix(l, "golaunch:") && !strings.HasPrefix(l, "  ") {
				ids = append(ids, l)
			}
		}
		require.Len(t, ids, 2, out)
		return strings.Join(ids, "\n")
	}
	require.Equal(t, gen("cpu", nil), gen("cuda", gpuEnv))
	tokens := filepath.Join(dir, "tokens.json")
	require.NoError(t, os.WriteFile(tokens, []byte("[[3, 6, 9, 12, 15, 18, 21], [5, 8, 11, 14]]"), 0o644))
	var losses [2][]float64
	for i, dev := range []string{"cpu", "cuda"} {
		env := gpuEnv
		if dev == "cpu" {
			env = nil
		}
		out := run(env, "evaluate", "--device", dev, "--load", ckpt, "--tokens", tokens, "--json")
		var res struct {
			Loss        float64   `json:"loss"`
			PerSequence []float64 `json:"per_sequence"`
		}
		require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res), out)
		losses[i] = append(res.PerSequence, res.Loss)
	}
	require.Len(t, losses[0], 3)
	for i := range losses[0] {
		require.InEpsilon(t, losses[0][i], losses[1][i], 1e-5, "evaluate: cpu %v, emulated gpu %v", losses[0], losses[1])
	}
}

// TestParallelismOnEmulatedGPUs runs context parallelism (with attention and hidden
// dropout) and mixture-of-experts with expert parallelism on two emulated GPUs: the CUDA
// path's chunked attention (query offsets, dropout rows of the whole sequence), MoE routing
// and the expert all-gathers give the CPU run's losses and grad norms.
func TestParallelismOnEmulatedGPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the emulator runs every CUDA thread as a fiber")
	}
	dir := t.TempDir()
	gpuEnv := emulatedGPUs(t, dir, 256)
	data := writeCorpus(t, dir)
	for name, layout := range map[string]string{
		"cp2":     "--context-parallel-size 2 --attention-dropout 0.1 --hidden-dropout 0.1",
		"moe-ep2": "--num-experts 4 --moe-router-topk 2 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size 2",
	} {
		t.Run(name, func(t *testing.T) {
			run := func(device string, env []string) logged {
				args := strings.Fields("--standalone --nproc-per-node 2 pretrain --num-layers 2 --hidden-size 64 " +
					"--num-attention-heads 4 --group-query-attention --num-query-groups 2 --ffn-hidden-size 64 --seq-length 32 " +
					"--max-position-embeddings 32 --micro-batch-size 2 --global-batch-size 4 --train-iters 3 --lr 3e-3 " +
					"--tokenizer-type NullTokenizer --vocab-size 255 --log-interval 1 --swiglu --normalization RMSNorm " +
					"--position-embedding-type rope --disable-bias-linear --split 100,0,0 --eval-iters 0 --distributed-backend gloo " +
					"--data-cache-path " + dir + " --data-path " + data + " --device " + device + " " + layout)
				cmd := exec.Command(golaunchBin, args...)
				cmd.Env = append(os.Environ(), append([]string{"GOLAUNCH_GRACE_PERIOD=5"}, env...)...)
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "%v\n%s", args, out)
				if device == "cuda" {
					require.Contains(t, string(out), "> training on cuda:1")
				}
				return parseLog(t, string(out))
			}
			g, c := run("cuda", gpuEnv), run("cpu", nil)
			require.Len(t, g.loss, 3)
			require.Len(t, c.loss, 3)
			for i := range c.loss {
				require.InEpsilon(t, c.loss[i], g.loss[i], 1e-5, "iteration %d loss: cpu %v, emulated gpu %v", i+1, c.loss, g.loss)
				require.InEpsilon(t, c.norm[i], g.norm[i], 2e-3, "iteration %d grad norm: cpu %v, emulated gpu %v", i+1, c.norm, g.norm)
			}
		})
	}
}
