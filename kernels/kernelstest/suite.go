// Package kernelstest is the conformance suite every kernels.Backend runs: each check
// feeds the backend random inputs and compares its results with float64 reference
// implementations written straight from the math in kernels.Backend's doc comments
// (simple loops in ref*.go), and every backward with central finite differences of the
// float64 reference (loss = Σ r⊙out for a random r).
//
// Tolerances (relative L2 error ‖got − want‖/‖want‖): F32 forwards 1e-5, backwards
// against finite differences 1e-4, BF16/F16 GEMM inputs compared with the rounded
// inputs' exact product, so 1e-5 too. A backend for another device runs the same
// checks: tensors are created with Alloc and moved with Upload/Download.
package kernelstest

import (
	"testing"

	"github.com/gomegatron/gomegatron/kernels"
)

// Check is one named conformance check.
type Check struct {
	Name string
	Run  func(t *testing.T, b kernels.Backend)
}

// Checks lists every conformance check in the order RunAll runs them.
func Checks() []Check {
	return []Check{
		{"Gemm", Gemm},
		{"Elementwise", Elementwise},
		{"Permute", Permute},
		{"StridedCopy", StridedCopy},
		{"QKV", QKV},
		{"Bias", Bias},
		{"Rows", Rows},
		{"Embedding", Embedding},
		{"RMSNorm", RMSNorm},
		{"LayerNorm", LayerNorm},
		{"RoPE", RoPE},
		{"Attention", Attention},
		{"AttentionBlocks", AttentionBlocks},
		{"AttentionDropoutRows", AttentionDropoutRows},
		{"SwiGLU", SwiGLU},
		{"GeLU", GeLU},
		{"SquaredReLU", SquaredReLU},
		{"Dropout", Dropout},
		{"CrossEntropy", CrossEntropy},
		{"AdamW", AdamW},
		{"CastWithAmax", CastWithAmax},
		{"Cast", Cast},
		{"BF16", BF16},
	}
}

// RunAll runs every check against b as subtests.
func RunAll(t *testing.T, b kernels.Backend) {
	for _, c := range Checks() {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, b) })
	}
}
