// Package train runs training: microbatches, the pipeline schedule, gradient finalisation,
// the optimizer step, logging, evaluation and checkpoints.
package train

// StepResult is what one iteration reports.
type StepResult struct {
	Loss     float64 // Σ loss / Σ tokens over the global batch (Megatron's lm loss); last stage only
	GradNorm float64
	Tokens   float64
	Skipped  bool // the update was skipped (non-finite gradients)
}
