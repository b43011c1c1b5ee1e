package launch

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpandNodeList(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "gpu[01-04,07],cpu5", want: []string{"gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "cpu5"}},
		{in: "node7", want: []string{"node7"}},
		{in: "a,b,c", want: []string{"a", "b", "c"}},
		{in: "n[8-11]", want: []string{"n8", "n9", "n10", "n11"}},
		{in: "r[1-2]n[1-2]", want: []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{in: "dgx-[001-002]-ib", want: []string{"dgx-001-ib", "dgx-002-ib"}},
		{in: "gpu[3]", want: []string{"gpu3"}},
		{in: "gpu[04-01]", err: "bad range"},
		{in: "gpu[01-04", err: "unbalanced ["},
		{in: "gpu[a-b]", err: "bad range"},
		{in: "", err: "names no host"},
	}
	for _, tc := range cases {
		got, err := ExpandNodeList(tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseTasksPerNode(t *testing.T) {
	got, err := parseTasksPerNode("8(x2),4,2(x1)")
	require.NoError(t, err)
	assert.Equal(t, []int{8, 8, 4, 2}, got)
	_, err = parseTasksPerNode("8(2)")
	assert.ErrorContains(t, err, "bad item")
}

func TestDetectPlatform(t *testing.T) {
	cases := []struct {
		name       string
		style      string
		env        map[string]string
		nprocGiven bool
		want       Platform
		err        string
	}{
		{name: "nothing", env: map[string]string{}, want: Platform{}},
		{name: "PAI-DLC: node-level WORLD_SIZE and RANK", env: map[string]string{
			"KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "WORLD_SIZE": "4", "RANK": "2", "MASTER_ADDR": "dlc-0", "MASTER_PORT": "23456"},
			want: Platform{Style: "dlc", NNodes: 4, NodeRank: 2, NProcPerNode: 8, MasterAddr: "dlc-0", MasterPort: 23456}},
		{name: "Kubeflow: trust PET_*, ignore process-level WORLD_SIZE", env: map[string]string{
			"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_NPROC_PER_NODE": "8", "WORLD_SIZE": "16", "RANK": "1",
			"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456"},
			want: Platform{Style: "kubeflow", NNodes: 2, NodeRank: 1, NProcPerNode: 8, MasterAddr: "job-master-0", MasterPort: 23456}},
		{name: "Kubeflow elastic N:N", env: map[string]string{"PET_NNODES": "3:3", "RANK": "2", "MASTER_ADDR": "m"},
			want: Platform{Style: "kubeflow", NNodes: 3, NodeRank: 2, MasterAddr: "m"}},
		{name: "Kubeflow elastic MIN:MAX refused", env: map[string]string{"PET_NNODES": "1:3"}, err: "elastic membership"},
		{name: "Slurm one task per node: node-level, master from the node list", env: map[string]string{
			"SLURM_JOB_ID": "77", "SLURM_NNODES": "5", "SLURM_NODEID": "3", "SLURM_JOB_NODELIST": "gpu[01-04,07],cpu5",
			"SLURM_PROCID": "3", "SLURM_NTASKS": "5", "SLURM_TASKS_PER_NODE": "1(x5)"},
			want: Platform{Style: "slurm", NNodes: 5, NodeRank: 3, MasterAddr: "gpu01", JobID: "77"}},
		{name: "Slurm one task per GPU: process-level", env: map[string]string{
			"SLURM_JOB_ID": "78", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "dgx[3-4]",
			"SLURM_PROCID": "13", "SLURM_LOCALID": "5", "SLURM_NTASKS": "16", "SLURM_TASKS_PER_NODE": "8(x2)", "MASTER_PORT": "6000"},
			want: Platform{Style: "slurm", ProcessLevel: true, NNodes: 2, NodeRank: 1, MasterAddr: "dgx3", MasterPort: 6000,
				Rank: 13, WorldSize: 16, LocalRank: 5, LocalWorldSize: 8, JobID: "78"}},
		{name: "Slurm MASTER_ADDR overrides the node list", env: map[string]string{
			"SLURM_JOB_ID": "1", "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_NODELIST": "a1", "MASTER_ADDR": "ib-a1"},
			want: Platform{Style: "slurm", NNodes: 1, MasterAddr: "ib-a1", JobID: "1"}},
		{name: "Slurm bad node list", env: map[string]string{"SLURM_JOB_ID": "1", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "x[1-"},
			err: "SLURM_JOB_NODELIST"},
		{name: "Slurm missing SLURM_NNODES", env: map[string]string{"SLURM_JOB_ID": "1"}, err: "SLURM_NNODES is not set"},
		{name: "Open MPI", env: map[string]string{
			"OMPI_COMM_WORLD_RANK": "6", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "2",
			"OMPI_COMM_WORLD_LOCAL_SIZE": "4", "MASTER_ADDR": "h0"},
			want: Platform{Style: "mpi", ProcessLevel: true, Rank: 6, WorldSize: 8, LocalRank: 2, LocalWorldSize: 4,
				NNodes: 2, NodeRank: 1, MasterAddr: "h0"}},
		{name: "Open MPI on one host needs no MASTER_ADDR", env: map[string]string{
			"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
			want: Platform{Style: "mpi", ProcessLevel: true, Rank: 1, WorldSize: 2, LocalRank: 1, LocalWorldSize: 2,
				NNodes: 1, MasterAddr: "127.0.0.1"}},
		{name: "Open MPI across hosts without MASTER_ADDR", env: map[string]string{
			"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
			err: "mpirun -x MASTER_ADDR"},
		{name: "MPICH/Intel MPI PMI", env: map[string]string{
			"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2", "MASTER_ADDR": "p0", "MASTER_PORT": "7000"},
			want: Platform{Style: "mpi", ProcessLevel: true, Rank: 3, WorldSize: 4, LocalRank: 1, LocalWorldSize: 2,
				NNodes: 2, NodeRank: 1, MasterAddr: "p0", MasterPort: 7000}},
		{name: "PMIx needs WORLD_SIZE", env: map[string]string{"PMIX_RANK": "0"}, err: "pass WORLD_SIZE"},
		{name: "Slurm wins over MPI variables", env: map[string]string{
			"SLURM_JOB_ID": "5", "SLURM_NNODES": "1", "PMI_RANK": "0", "PMI_SIZE": "1"},
			want: Platform{Style: "slurm", NNodes: 1, JobID: "5"}},
		{name: "worker of an elastic agent wins over the scheduler", env: map[string]string{
			"SLURM_JOB_ID": "5", "SLURM_NNODES": "2", "TORCHELASTIC_RUN_ID": "r", "RANK": "9", "LOCAL_RANK": "1",
			"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "2", "MASTER_ADDR": "m", "MASTER_PORT": "29500",
			"GOMEGATRON_STORE_ADDR": "m:29500"},
			want: Platform{Style: "torch", ProcessLevel: true, Rank: 9, WorldSize: 16, LocalRank: 1, LocalWorldSize: 8,
				NNodes: 2, NodeRank: 1, MasterAddr: "m", MasterPort: 29500, JobID: "r", AgentStore: "m:29500"}},
		{name: "under torchrun: its c10d store", env: map[string]string{
			"TORCHELASTIC_RUN_ID": "r", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"},
			want: Platform{Style: "torch", ProcessLevel: true, WorldSize: 1, LocalWorldSize: 1, JobID: "r", AgentStore: "torch"}},
		{name: "bare WORLD_SIZE/RANK without --nproc-per-node: process-level", env: map[string]string{"WORLD_SIZE": "4", "RANK": "1", "MASTER_ADDR": "m"},
			want: Platform{Style: "torch", ProcessLevel: true, Rank: 1, WorldSize: 4, LocalWorldSize: 1, NNodes: 4, NodeRank: 1, MasterAddr: "m"}},
		{name: "bare WORLD_SIZE/RANK with --nproc-per-node: node-level", nprocGiven: true,
			env:  map[string]string{"WORLD_SIZE": "4", "RANK": "1", "MASTER_ADDR": "m"},
			want: Platform{Style: "torch", NNodes: 4, NodeRank: 1, MasterAddr: "m"}},
		{name: "forced dlc ignores Slurm", style: "dlc", env: map[string]string{"SLURM_JOB_ID": "5", "WORLD_SIZE": "2", "RANK": "1", "KUBERNETES_CONTAINER_RESOURCE_GPU": "4"},
			want: Platform{Style: "dlc", NNodes: 2, NodeRank: 1, NProcPerNode: 4}},
		{name: "forced slurm outside Slurm", style: "slurm", env: map[string]string{}, err: "SLURM_JOB_ID is not set"},
		{name: "forced mpi outside mpirun", style: "mpi", env: map[string]string{}, err: "not started by mpirun"},
		{name: "rank outside world", env: map[string]string{"OMPI_COMM_WORLD_RANK": "4", "OMPI_COMM_WORLD_SIZE": "4", "MASTER_ADDR": "x"}, err: "rank 4 outside world size 4"},
		{name: "malformed integer", env: map[string]string{"KUBERNETES_CONTAINER_RESOURCE_GPU": "eight"}, err: `KUBERNETES_CONTAINER_RESOURCE_GPU="eight"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DetectPlatform(tc.style, envOf(tc.env), tc.nprocGiven)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.want.Style != "" {
				assert.NotEmpty(t, p.Why)
			}
			p.Why, p.Warning = "", ""
			assert.Equal(t, tc.want, p)
		})
	}
}
