package cpu

import (
	"testing"

	"github.com/gomegatron/gomegatron/kernels/kernelstest"
)

// TestConformance runs the backend-independent suite against the CPU backend.
func TestConformance(t *testing.T) {
	kernelstest.RunAll(t, New())
}
