package megatron

import (
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
)

// StateDict starts a shard's top-level dict as Megatron's generate_state_dict does:
// args, checkpoint_version (3.0), iteration and model, in that order. Training adds
// optimizer, opt_param_scheduler, rng_state and num_floating_point_operations_so_far
// with Set before saving.
func StateDict(args *torchpickle.Namespace, iteration int, model *torchpickle.Dict) *torchpickle.Dict {
	return StateDictChunks(args, iteration, []*torchpickle.Dict{model})
}

// StateDictChunks is StateDict for a stage of several model chunks (virtual pipeline
// stages): model0, model1, … as Megatron names them; one chunk is plain "model".
func StateDictChunks(args *torchpickle.Namespace, iteration int, models []*torchpickle.Dict) *torchpickle.Dict {
	d := torchpickle.NewDict(false)
	d.Set("args", args)
	d.Set("checkpoint_version", CheckpointVersion)
	d.Set("iteration", iteration)
	for v, m := range models {
		d.Set(chunkKey(v, len(models)), m)
	}
	return d
}

// chunkKey is the state-dict key of model chunk v of n.
func chunkKey(v, n int) string {
	if n == 1 {
		return "model"
	}
	return fmt.Sprintf("model%d", v)
}

// SaveShard writes shard (tp, pp) of a checkpoint as <dir>/mp_rank_…/model_optim_rng.pt,
// atomically (temp file, fsync, rename). ppSize selects the folder naming. The tracker
// is not touched: write it with WriteTracker once every shard is saved.
func SaveShard(l Location, tpRank, ppRank, ppSize int, state *torchpickle.Dict) error {
	return saveFile(l.ShardFile(tpRank, ppRank, ppSize, ModelFile), state)
}

// SaveDistribOptim writes the distributed optimizer's parameter state of shard (tp, pp)
// (get_parameter_state_dp_zero's dict) next to model_optim_rng.pt, atomically.
func SaveDistribOptim(l Location, tpRank, ppRank, ppSize int, state any) error {
	return saveFile(l.ShardFile(tpRank, ppRank, ppSize, DistribOptimFile), state)
}

func saveFile(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	if err := torchpickle.Save(path, v); err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	atomicfile.SyncDir(filepath.Dir(path))
	return nil
}

// LoadShard opens shard (tp, pp)'s model_optim_rng.pt (memory-mapped; tensors are views
// valid until Close) and checks that it is a Megatron state dict: a dict with args and
// a model entry. Pai's older model_rng.pt name is accepted when model_optim_rng.pt is
// absent.
func LoadShard(l Location, tpRank, ppRank, ppSize int) (*ShardFile, error) {
	path := l.ShardFile(tpRank, ppRank, ppSize, ModelFile)
	if _, err := os.Stat(path); errNotExist(err) {
		// Pai-Megatron-Patch's v1 convertor named release shards model_rng.pt.
		if old := l.ShardFile(tpRank, ppRank, ppSize, "model_rng.pt"); fileExists(old) {
			path = old
		}
	}
	return OpenShardFile(path)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// LoadDistribOptim reads shard (tp, pp)'s distrib_optim.pt into memory.
func LoadDistribOptim(l Location, tpRank, ppRank, ppSize int) (any, error) {
	path := l.ShardFile(tpRank, ppRank, ppSize, DistribOptimFile)
	v, err := torchpickle.Load(path)
	if err != nil {
		return nil, fmt.Errorf("megatron: %w", err)
	}
	return v, nil
}
