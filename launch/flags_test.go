package launch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o *Options)
		rest    []string
		wantErr string
	}{
		{name: "torchrun spellings stop at the command",
			args: []string{"--nproc_per_node=4", "--nnodes", "2", "--node-rank=1", "--master_addr", "n0", "--master-port", "1234", "pretrain", "--nnodes", "9", "-r", "3"},
			rest: []string{"pretrain", "--nnodes", "9", "-r", "3"},
			check: func(t *testing.T, o *Options) {
				assert.Equal(t, "4", o.NProcPerNode)
				assert.Equal(t, "2", o.NNodes)
				assert.Equal(t, 1, o.NodeRank)
				assert.Equal(t, "n0", o.MasterAddr)
				assert.Equal(t, 1234, o.MasterPort)
				assert.Equal(t, "--nproc-per-node", o.Given["nproc-per-node"])
			}},
		{name: "aliases and short flags",
			args: []string{"--nproc", "gpu", "-r3", "-t", "0:1,1:2", "--run-id", "job7", "--standalone", "--", "./a.out", "-x"},
			rest: []string{"./a.out", "-x"},
			check: func(t *testing.T, o *Options) {
				assert.Equal(t, "gpu", o.NProcPerNode)
				assert.Equal(t, "3", o.Redirects)
				assert.Equal(t, "0:1,1:2", o.Tee)
				assert.Equal(t, "job7", o.RunID)
				assert.True(t, o.Standalone)
			}},
		{name: "rdzv_id and monitor interval in seconds",
			args: []string{"--rdzv_id=abc", "--monitor_interval", "0.5", "--max_restarts=2", "--local_ranks_filter", "0,2", "sh"},
			rest: []string{"sh"},
			check: func(t *testing.T, o *Options) {
				assert.Equal(t, "abc", o.RunID)
				assert.Equal(t, 500*time.Millisecond, o.MonitorInterval)
				assert.Equal(t, 2, o.MaxRestarts)
				assert.Equal(t, "0,2", o.LocalRanksFilter)
			}},
		{name: "PET_ fallbacks, flags win",
			args: []string{"--nnodes", "3", "x"},
			env:  map[string]string{"PET_NNODES": "5", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "2", "PET_STANDALONE": "0", "GOLAUNCH_GRACE_PERIOD": "1.5"},
			rest: []string{"x"},
			check: func(t *testing.T, o *Options) {
				assert.Equal(t, "3", o.NNodes)
				assert.Equal(t, "8", o.NProcPerNode)
				assert.Equal(t, 2, o.NodeRank)
				assert.False(t, o.Standalone)
				assert.Equal(t, 1500*time.Millisecond, o.GracePeriod)
				assert.Equal(t, "PET_NPROC_PER_NODE", o.Given["nproc-per-node"])
				assert.Equal(t, "--nnodes", o.Given["nnodes"])
			}},
		{name: "no flags", args: []string{"evaluate", "--help"}, rest: []string{"evaluate", "--help"},
			check: func(t *testing.T, o *Options) { assert.False(t, o.FlagsGiven()) }},
		{name: "unknown flag", args: []string{"--nprocs", "2", "x"}, wantErr: "unknown launcher flag --nprocs"},
		{name: "single dash long name", args: []string{"-nproc", "2", "x"}, wantErr: "unknown launcher flag -nproc"},
		{name: "missing value", args: []string{"--nnodes"}, wantErr: "launcher flag --nnodes needs a value"},
		{name: "bad int", args: []string{"--node-rank", "one", "x"}, wantErr: "--node-rank: want an integer"},
		{name: "bad PET", args: []string{"x"}, env: map[string]string{"PET_MAX_RESTARTS": "many"}, wantErr: "environment PET_MAX_RESTARTS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, rest, err := ParseArgs(tc.args, envOf(tc.env))
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.rest, rest)
			tc.check(t, o)
		})
	}
	_, _, err := ParseArgs([]string{"--help"}, envOf(nil))
	assert.ErrorIs(t, err, ErrHelp)
}

func TestResolveFlagsWinAndDefaults(t *testing.T) {
	resolve := func(args []string, env map[string]string) (*Layout, error) {
		o, _, err := ParseArgs(append(args, "cmd"), envOf(env))
		require.NoError(t, err)
		return Resolve(o, envOf(env))
	}
	l, err := resolve(nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "", l.Style)
	assert.Equal(t, 1, l.NNodes)
	assert.Equal(t, 1, l.NProcPerNode)
	assert.Equal(t, "127.0.0.1", l.MasterAddr)
	assert.Equal(t, 29500, l.MasterPort)
	assert.Equal(t, "none", l.RunID)
	assert.Equal(t, "default", l.Role)
	assert.Equal(t, 30*time.Second, l.GracePeriod)

	dlc := map[string]string{"KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "WORLD_SIZE": "4", "RANK": "3", "MASTER_ADDR": "dlc-master", "MASTER_PORT": "23456"}
	l, err = resolve([]string{"--nproc-per-node", "2", "--master-port", "999"}, dlc)
	require.NoError(t, err)
	assert.Equal(t, "dlc", l.Style)
	assert.Equal(t, 4, l.NNodes)
	assert.Equal(t, 3, l.NodeRank)
	assert.Equal(t, 2, l.NProcPerNode, "explicit --nproc-per-node wins over KUBERNETES_CONTAINER_RESOURCE_GPU")
	assert.Equal(t, 999, l.MasterPort)
	assert.Equal(t, "dlc-master", l.MasterAddr)
	assert.Equal(t, "--nproc-per-node", l.Source["nproc-per-node"])
	assert.Equal(t, "dlc environment", l.Source["nnodes"])

	l, err = resolve([]string{"--standalone"}, nil)
	require.NoError(t, err)
	assert.Equal(t, 0, l.MasterPort)
	assert.Len(t, l.RunID, 36)

	_, err = resolve([]string{"--standalone", "--nnodes", "2"}, nil)
	assert.ErrorContains(t, err, "--standalone runs one node")
	_, err = resolve([]string{"--nnodes", "2", "--node-rank", "2"}, nil)
	assert.ErrorContains(t, err, "--node-rank: node rank 2 outside 0..1")
	_, err = resolve([]string{"--nnodes", "1:4"}, nil)
	assert.ErrorContains(t, err, "elastic membership")
	_, err = resolve([]string{"--nproc-per-node", "zero"}, nil)
	assert.ErrorContains(t, err, "--nproc-per-node: want a positive integer, gpu, cpu or auto")
	_, err = resolve([]string{"--env-style", "pbs"}, nil)
	assert.ErrorContains(t, err, `--env-style "pbs"`)
	l, err = resolve([]string{"--rdzv-endpoint", "host9:4444"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "host9", l.MasterAddr)
	assert.Equal(t, 4444, l.MasterPort)

	// A golaunch worker inheriting Kubeflow's PET_* stays process-level: only command-line
	// flags may turn it into a launcher again.
	worker := map[string]string{"TORCHELASTIC_RUN_ID": "none", "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8",
		"LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1", "PET_NNODES": "2", "PET_NPROC_PER_NODE": "4", "GOMEGATRON_STORE_ADDR": "m:1"}
	l, err = resolve(nil, worker)
	require.NoError(t, err)
	assert.True(t, l.ProcessLevel)
	assert.Equal(t, 5, l.Rank)
	assert.Equal(t, "m:1", l.AgentStore)
	l, err = resolve([]string{"--nproc-per-node", "2"}, worker)
	require.NoError(t, err)
	assert.False(t, l.ProcessLevel)
	assert.Contains(t, l.Warning, "--nproc-per-node given")
}
