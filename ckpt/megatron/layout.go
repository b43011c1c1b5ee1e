// Package megatron reads and writes Megatron-LM checkpoints in the legacy `torch` format
// (--ckpt-format torch): the directory layout, the per-shard state dicts and both model key
// layouts (mcore, with the local or the Transformer Engine layer spec, and the nested
// legacy GPT layout).
//
// A checkpoint is a directory tree:
//
//	<root>/latest_checkpointed_iteration.txt           "100" or "release" (written last)
//	<root>/iter_0000100/mp_rank_{tp:02d}/model_optim_rng.pt             PP = 1
//	<root>/iter_0000100/mp_rank_{tp:02d}_{pp:03d}/model_optim_rng.pt    PP > 1
//	<root>/iter_0000100/mp_rank_…/distrib_optim.pt     with --use-distributed-optimizer
//	<root>/release/mp_rank_…/model_optim_rng.pt        converted weights (iteration 0)
//
// Each file is a torch.save zip (package torchpickle) holding one (TP, PP) shard's dict:
// args (argparse.Namespace), checkpoint_version (3.0), iteration, model, and for training
// checkpoints optimizer, opt_param_scheduler and rng_state. Model tensors are named with
// the stage-local layer index (decoder.layers.0 is the first layer of the stage).
package megatron

import (
	"errors"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Megatron's file and folder names (megatron/training/checkpointing.py).
const (
	TrackerFile       = "latest_checkpointed_iteration.txt"
	ModelFile         = "model_optim_rng.pt"
	DistribOptimFile  = "distrib_optim.pt"
	ReleaseDir        = "release"
	CheckpointVersion = 3.0
)

// Location names one saved checkpoint: the --save/--load root and the iteration (or the
// release folder, which Megatron loads as iteration 0).
type Location struct {
	Root      string
	Iteration int
	Release   bool
	// ExpertRank and ExpertSize select the expert-parallel shards of a checkpoint saved with
	// --expert-model-parallel-size ExpertSize > 1, whose folders Megatron suffixes _EEE
	// (mp_rank_XX_EEE, mp_rank_XX_YYY_EEE); 0 and 0 or 1 without expert parallelism.
	ExpertRank, ExpertSize int
}

// IterDirName is the folder of an iteration: iter_0000100, or release.
func IterDirName(iteration int, release bool) string {
	if release {
		return ReleaseDir
	}
	return fmt.Sprintf("iter_%07d", iteration)
}

// ShardDirName is the folder of one model-parallel shard: mp_rank_XX when the pipeline has
// one stage, mp_rank_XX_YYY otherwise (get_checkpoint_name).
func ShardDirName(tpRank, ppRank, ppSize int) string {
	if ppSize > 1 {
		return fmt.Sprintf("mp_rank_%02d_%03d", tpRank, ppRank)
	}
	return fmt.Sprintf("mp_rank_%02d", tpRank)
}

// Dir is the iteration folder.
func (l Location) Dir() string { return filepath.Join(l.Root, IterDirName(l.Iteration, l.Release)) }

// ShardFile is the path of file (ModelFile or DistribOptimFile) of shard (tp, pp) (of
// expert-parallel shard l.ExpertRank when l.ExpertSize > 1).
func (l Location) ShardFile(tpRank, ppRank, ppSize int, file string) string {
	return filepath.Join(l.Dir(), l.shardDir(tpRank, ppRank, ppSize), file)
}

// shardDir is ShardDirName with the expert-parallel suffix (get_checkpoint_name).
func (l Location) shardDir(tpRank, ppRank, ppSize int) string {
	if l.ExpertSize > 1 {
		return fmt.Sprintf("%s_%03d", ShardDirName(tpRank, ppRank, ppSize), l.ExpertRank)
	}
	return ShardDirName(tpRank, ppRank, ppSize)
}

// ExpertSize is the expert-parallel size a checkpoint was saved with: the
// expert_model_parallel_size of its args (read from the first shard folder), 1 when absent
// (or the shard has no args, as some converted checkpoints).
func ExpertSize(l Location) (int, error) {
	ents, err := os.ReadDir(l.Dir())
	if err != nil {
		return 0, fmt.Errorf("megatron: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "mp_rank_") {
			continue
		}
		path := filepath.Join(l.Dir(), e.Name(), ModelFile)
		if old := filepath.Join(l.Dir(), e.Name(), "model_rng.pt"); !fileExists(path) && fileExists(old) {
			path = old
		}
		sf, err := OpenShardFile(path)
		if err != nil {
			return 0, err
		}
		defer sf.Close()
		args, err := sf.Args()
		if err != nil {
			return 1, nil
		}
		a := argReader{ns: args}
		n := a.int("expert_model_parallel_size", 1)
		if n < 1 || a.err != nil {
			return 0, fmt.Errorf("megatron: %s: bad expert_model_parallel_size %d %v", sf.Path, n, a.err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("megatron: %s has no mp_rank_* shard folders", l.Dir())
}

// ReadTracker reads root/latest_checkpointed_iteration.txt: an iteration number or
// "release" (surrounding white space is ignored, as Megatron strips it).
func ReadTracker(root string) (iteration int, release bool, err error) {
	path := filepath.Join(root, TrackerFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, fmt.Errorf("megatron: reading tracker: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == ReleaseDir {
		return 0, true, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("megatron: %s: %q is neither an iteration number nor %q", path, s, ReleaseDir)
	}
	return n, false, nil
}

// WriteTracker atomically writes the tracker file. Call it after every shard of the
// checkpoint is on disk: a crash before then leaves the previous checkpoint current.
func WriteTracker(l Location) error {
	s := strconv.Itoa(l.Iteration)
	if l.Release {
		s = ReleaseDir
	}
	path := filepath.Join(l.Root, TrackerFile)
	if err := writeFileAtomic(path, []byte(s)); err != nil {
		return fmt.Errorf("megatron: writing %s: %w", path, err)
	}
	return nil
}

// Resolve finds the checkpoint a path names: a root with a tracker file (its current
// iteration), or an iteration folder itself (iter_XXXXXXX or release, as Pai's convertor
// takes with --load_path …/release). The root must hold the iteration folder.
func Resolve(path string) (Location, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Location{}, fmt.Errorf("megatron: %w", err)
	}
	if !st.IsDir() {
		return Location{}, fmt.Errorf("megatron: %s is not a directory", path)
	}
	if _, err := os.Stat(filepath.Join(path, TrackerFile)); err == nil {
		it, rel, err := ReadTracker(path)
		if err != nil {
			return Location{}, err
		}
		l := Location{Root: path, Iteration: it, Release: rel}
		if _, err := os.Stat(l.Dir()); err != nil {
			return Location{}, fmt.Errorf("megatron: %s names %s, which is missing: %w", filepath.Join(path, TrackerFile), IterDirName(it, rel), err)
		}
		return l, nil
	}
	base := filepath.Base(filepath.Clean(path))
	if base == ReleaseDir {
		return Location{Root: filepath.Dir(filepath.Clean(path)), Release: true}, nil
	}
	if m := iterRe.FindStringSubmatch(base); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Location{Root: filepath.Dir(filepath.Clean(path)), Iteration: n}, nil
	}
	return Location{}, fmt.Errorf("megatron: %s has no %s and is not an iter_XXXXXXX or %s folder", path, TrackerFile, ReleaseDir)
}

var (
	iterRe  = regexp.MustCompile(`^iter_(\d{7,})$`)
	shardRe = regexp.MustCompile(`^mp_rank_(\d{2,})(?:_(\d{3,}))?$`)
	// With expert parallelism the last _EEE is the expert-parallel rank.
	expertShardRe = regexp.MustCompile(`^mp_rank_(\d{2,})(?:_(\d{3,}))?_(\d{3,})$`)
)

// Shards lists the mp_rank folders of an iteration folder and returns the TP × PP grid
// they form. Every (tp, pp) of the grid must be present. With l.ExpertSize > 1 the grid is
// that of expert-parallel rank l.ExpertRank's folders (the ones suffixed _EEE with it).
func Shards(l Location) (tp, pp int, err error) {
	dir := l.Dir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("megatron: %w", err)
	}
	type rank struct{ t, p int }
	seen := map[rank]bool{}
	withPP, first := false, true
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "mp_rank_") {
			continue
		}
		m := shardRe.FindStringSubmatch(e.Name())
		if l.ExpertSize > 1 {
			if m = expertShardRe.FindStringSubmatch(e.Name()); m == nil {
				return 0, 0, fmt.Errorf("megatron: %s: folder %s lacks the _EEE suffix of an expert-parallel checkpoint", dir, e.Name())
			}
			if r, _ := strconv.Atoi(m[3]); r >= l.ExpertSize {
				return 0, 0, fmt.Errorf("megatron: %s: folder %s is past expert-parallel size %d", dir, e.Name(), l.ExpertSize)
			} else if r != l.ExpertRank {
				continue
			}
		}
		if m == nil {
			return 0, 0, fmt.Errorf("megatron: %s: folder %s is not mp_rank_XX or mp_rank_XX_YYY (an expert-parallel checkpoint? load it with its --expert-model-parallel-size)", dir, e.Name())
		}
		t, _ := strconv.Atoi(m[1])
		p := 0
		hasPP := m[2] != ""
		if hasPP {
			p, _ = strconv.Atoi(m[2])
		}
		if !first && withPP != hasPP {
			return 0, 0, fmt.Errorf("megatron: %s mixes mp_rank_XX and mp_rank_XX_YYY folders", dir)
		}
		withPP, first = hasPP, false
		seen[rank{t, p}] = true
		tp, pp = max(tp, t+1), max(pp, p+1)
	}
	if len(seen) == 0 {
		return 0, 0, fmt.Errorf("megatron: %s has no mp_rank_* shard folders", dir)
	}
	nameSize := 1 // the ppSize that gives the folder names in use
	if withPP {
		nameSize = 2
	}
	var missing []string
	for p := 0; p < pp; p++ {
		for t := 0; t < tp; t++ {
			if !seen[rank{t, p}] {
				missing = append(missing, l.shardDir(t, p, nameSize))
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return 0, 0, fmt.Errorf("megatron: %s: shard folders %s are missing from a %d×%d (TP×PP) grid", dir, strings.Join(missing, ", "), tp, pp)
	}
	if withPP && pp == 1 {
		// mp_rank_XX_000 alone: a one-stage pipeline saved with the PP suffix.
		return tp, pp, fmt.Errorf("megatron: %s: mp_rank_XX_000 folders without a second stage; Megatron writes mp_rank_XX for PP=1", dir)
	}
	return tp, pp, nil
}

// writeFileAtomic creates path's folder and writes data atomically.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data)
}

// errNotExist reports a missing file through any wrapping.
func errNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
