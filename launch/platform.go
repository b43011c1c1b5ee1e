package launch

import (
	"fmt"
	"strconv"
	"strings"
)

// Platform is what a scheduler's environment says about the job, translated to torchrun's
// terms. Node-level platforms (PAI-DLC, Kubeflow, Slurm with one task per node) give the
// node count and this node's rank, and golaunch spawns the workers. Process-level platforms
// (Slurm with one task per GPU, Open MPI, MPICH/PMI, or a parent torchrun/golaunch) already
// started every process: golaunch spawns nothing and runs the command as that rank.
type Platform struct {
	Style        string // torch | dlc | kubeflow | slurm | mpi, or "" when nothing was found
	Why          string // which variables were read and how they were interpreted
	ProcessLevel bool
	Warning      string // set when the interpretation was a guess

	// Node level (also filled for process-level platforms where known). 0 / "" = unknown.
	NNodes, NodeRank, NProcPerNode int
	MasterAddr                     string
	MasterPort                     int

	// Process level.
	Rank, WorldSize, LocalRank, LocalWorldSize int

	// JobID identifies the job on the platform (SLURM_JOB_ID, …); it feeds the job token.
	JobID string
	// AgentStore is set when a parent elastic agent already hosts a store (our own
	// GOMEGATRON_STORE_ADDR, or torchrun's c10d store when TORCHELASTIC_USE_AGENT_STORE).
	AgentStore string
}

// EnvStyles are the values of --env-style.
var EnvStyles = []string{"auto", "torch", "dlc", "kubeflow", "slurm", "mpi"}

type envReader struct {
	get  func(string) string
	errs []string
}

func (e *envReader) has(k string) bool { return e.get(k) != "" }

// int reads an integer variable; a missing or malformed one is recorded as an error.
func (e *envReader) int(k string) int {
	v := e.get(k)
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a non-negative integer", k, v))
	}
	return n
}

// optInt reads an optional integer variable (0 when unset).
func (e *envReader) optInt(k string) int {
	if !e.has(k) {
		return 0
	}
	return e.int(k)
}

func (e *envReader) first(keys ...string) string {
	for _, k := range keys {
		if v := e.get(k); v != "" {
			return k
		}
	}
	return ""
}

// DetectPlatform reads the platform environment for --env-style style (auto detects).
// nprocGiven tells whether --nproc-per-node was given: it decides how a bare torch-style
// WORLD_SIZE/RANK pair is read. Auto-detection order: a parent elastic agent
// (TORCHELASTIC_RUN_ID with RANK, LOCAL_RANK, WORLD_SIZE) → SLURM_JOB_ID → OMPI_COMM_WORLD_SIZE,
// PMI_SIZE or PMIX_RANK → PET_NNODES (Kubeflow) → KUBERNETES_CONTAINER_RESOURCE_GPU (PAI-DLC)
// → MASTER_ADDR/WORLD_SIZE/RANK (torch).
func DetectPlatform(style string, getenv func(string) string, nprocGiven bool) (Platform, error) {
	e := &envReader{get: getenv}
	var p Platform
	switch style {
	case "", "auto":
		switch {
		case isAgentWorker(e):
			p = torchPlatform(e, nprocGiven)
		case e.has("SLURM_JOB_ID"):
			p = slurmPlatform(e)
		case e.has("OMPI_COMM_WORLD_SIZE") || e.has("PMI_SIZE") || e.has("PMIX_RANK"):
			p = mpiPlatform(e)
		case e.has("PET_NNODES"):
			p = kubeflowPlatform(e)
		case e.has("KUBERNETES_CONTAINER_RESOURCE_GPU"):
			p = dlcPlatform(e)
		case e.has("WORLD_SIZE") || e.has("RANK") || e.has("MASTER_ADDR"):
			p = torchPlatform(e, nprocGiven)
		default:
			return Platform{}, nil
		}
	case "torch":
		p = torchPlatform(e, nprocGiven)
	case "slurm":
		if !e.has("SLURM_JOB_ID") {
			return Platform{}, fmt.Errorf("--env-style slurm: SLURM_JOB_ID is not set (not inside a Slurm job?)")
		}
		p = slurmPlatform(e)
	case "mpi":
		if !(e.has("OMPI_COMM_WORLD_SIZE") || e.has("PMI_SIZE") || e.has("PMIX_RANK")) {
			return Platform{}, fmt.Errorf("--env-style mpi: none of OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK is set (not started by mpirun?)")
		}
		p = mpiPlatform(e)
	case "kubeflow":
		p = kubeflowPlatform(e)
	case "dlc":
		p = dlcPlatform(e)
	default:
		return Platform{}, fmt.Errorf("--env-style %q: want one of %s", style, strings.Join(EnvStyles, ", "))
	}
	if len(e.errs) > 0 {
		return Platform{}, fmt.Errorf("%s environment: %s", p.Style, strings.Join(e.errs, "; "))
	}
	if p.ProcessLevel {
		if p.WorldSize < 1 || p.Rank >= p.WorldSize {
			return Platform{}, fmt.Errorf("%s environment: rank %d outside world size %d", p.Style, p.Rank, p.WorldSize)
		}
		if p.LocalWorldSize < 1 {
			p.LocalWorldSize = 1
		}
		if p.LocalRank >= p.LocalWorldSize {
			return Platform{}, fmt.Errorf("%s environment: local rank %d outside local world size %d", p.Style, p.LocalRank, p.LocalWorldSize)
		}
	}
	if p.NNodes > 0 && p.NodeRank >= p.NNodes {
		return Platform{}, fmt.Errorf("%s environment: node rank %d outside %d nodes", p.Style, p.NodeRank, p.NNodes)
	}
	return p, nil
}

// isAgentWorker: this process is a worker started by torchrun or golaunch.
func isAgentWorker(e *envReader) bool {
	return e.has("TORCHELASTIC_RUN_ID") && e.has("RANK") && e.has("LOCAL_RANK") && e.has("WORLD_SIZE")
}

func masterFromEnv(e *envReader, p *Platform) {
	p.MasterAddr = e.get("MASTER_ADDR")
	p.MasterPort = e.optInt("MASTER_PORT")
}

func torchPlatform(e *envReader, nprocGiven bool) Platform {
	p := Platform{Style: "torch"}
	masterFromEnv(e, &p)
	if e.has("LOCAL_RANK") || isAgentWorker(e) {
		p.ProcessLevel = true
		p.Rank, p.WorldSize, p.LocalRank = e.int("RANK"), e.int("WORLD_SIZE"), e.int("LOCAL_RANK")
		p.LocalWorldSize = e.optInt("LOCAL_WORLD_SIZE")
		p.NodeRank, p.NNodes = e.optInt("GROUP_RANK"), e.optInt("GROUP_WORLD_SIZE")
		p.JobID = e.get("TORCHELASTIC_RUN_ID")
		p.Why = "RANK, LOCAL_RANK, WORLD_SIZE set: process-level (this process is already one rank)"
		if isAgentWorker(e) {
			p.Why = "started by an elastic agent (TORCHELASTIC_RUN_ID, RANK, LOCAL_RANK, WORLD_SIZE set): process-level"
		}
		if s := e.get("GOMEGATRON_STORE_ADDR"); s != "" {
			p.AgentStore = s
		} else if strings.EqualFold(e.get("TORCHELASTIC_USE_AGENT_STORE"), "true") {
			p.AgentStore = "torch"
		}
		return p
	}
	if !e.has("WORLD_SIZE") && !e.has("RANK") {
		p.Why = "MASTER_ADDR/MASTER_PORT only"
		return p
	}
	if nprocGiven {
		p.NNodes, p.NodeRank = e.optInt("WORLD_SIZE"), e.optInt("RANK")
		p.Why = "WORLD_SIZE/RANK read as node count/node rank, since --nproc-per-node was given"
		p.Warning = "WORLD_SIZE/RANK without LOCAL_RANK are ambiguous; read as node-level (nodes, node rank) because --nproc-per-node was given; use --env-style or --nnodes/--node-rank to be explicit"
		return p
	}
	p.ProcessLevel = true
	p.Rank, p.WorldSize = e.int("RANK"), e.int("WORLD_SIZE")
	p.LocalWorldSize = 1
	p.NNodes, p.NodeRank = p.WorldSize, p.Rank
	p.Why = "WORLD_SIZE/RANK read as process-level (one process per rank), since --nproc-per-node was not given"
	p.Warning = "WORLD_SIZE/RANK without LOCAL_RANK are ambiguous; read as process-level (global rank, world size) because --nproc-per-node was not given; use --env-style or --nnodes/--node-rank to be explicit"
	return p
}

func slurmPlatform(e *envReader) Platform {
	p := Platform{Style: "slurm", JobID: e.get("SLURM_JOB_ID")}
	nn := e.first("SLURM_JOB_NUM_NODES", "SLURM_NNODES")
	if nn == "" {
		e.errs = append(e.errs, "SLURM_NNODES is not set")
		return p
	}
	p.NNodes = e.int(nn)
	p.NodeRank = e.optInt("SLURM_NODEID")
	if k := e.first("SLURM_JOB_NODELIST", "SLURM_NODELIST"); k != "" {
		hosts, err := ExpandNodeList(e.get(k))
		if err != nil {
			e.errs = append(e.errs, k+": "+err.Error())
		} else {
			p.MasterAddr = hosts[0]
		}
	}
	if e.has("MASTER_ADDR") {
		p.MasterAddr = e.get("MASTER_ADDR")
	}
	p.MasterPort = e.optInt("MASTER_PORT")

	// Tasks on this node: SLURM_NTASKS_PER_NODE, else this node's entry of
	// SLURM_TASKS_PER_NODE, else SLURM_NTASKS spread evenly.
	tasksHere := 0
	switch {
	case e.has("SLURM_NTASKS_PER_NODE"):
		tasksHere = e.int("SLURM_NTASKS_PER_NODE")
	case e.has("SLURM_TASKS_PER_NODE"):
		counts, err := parseTasksPerNode(e.get("SLURM_TASKS_PER_NODE"))
		if err != nil {
			e.errs = append(e.errs, err.Error())
		} else if p.NodeRank < len(counts) {
			tasksHere = counts[p.NodeRank]
		}
	case e.has("SLURM_NTASKS") && p.NNodes > 0:
		tasksHere = e.int("SLURM_NTASKS") / p.NNodes
	}
	if e.has("SLURM_PROCID") && e.has("SLURM_NTASKS") && tasksHere > 1 {
		p.ProcessLevel = true
		p.Rank, p.WorldSize = e.int("SLURM_PROCID"), e.int("SLURM_NTASKS")
		p.LocalRank, p.LocalWorldSize = e.optInt("SLURM_LOCALID"), tasksHere
		p.Why = fmt.Sprintf("SLURM_JOB_ID set, %d tasks on this node: process-level (RANK=SLURM_PROCID, LOCAL_RANK=SLURM_LOCALID, WORLD_SIZE=SLURM_NTASKS)", tasksHere)
		return p
	}
	p.Why = "SLURM_JOB_ID set, one task per node: node-level (nodes=SLURM_NNODES, node rank=SLURM_NODEID, master=first host of the node list)"
	return p
}

func mpiPlatform(e *envReader) Platform {
	p := Platform{Style: "mpi", ProcessLevel: true}
	switch {
	case e.has("OMPI_COMM_WORLD_SIZE"):
		p.Rank, p.WorldSize = e.int("OMPI_COMM_WORLD_RANK"), e.int("OMPI_COMM_WORLD_SIZE")
		p.LocalRank, p.LocalWorldSize = e.optInt("OMPI_COMM_WORLD_LOCAL_RANK"), e.optInt("OMPI_COMM_WORLD_LOCAL_SIZE")
		p.JobID = e.get("OMPI_MCA_ess_base_jobid")
		p.Why = "Open MPI (OMPI_COMM_WORLD_*): process-level"
	case e.has("PMI_SIZE"):
		p.Rank, p.WorldSize = e.int("PMI_RANK"), e.int("PMI_SIZE")
		p.LocalRank, p.LocalWorldSize = e.optInt("MPI_LOCALRANKID"), e.optInt("MPI_LOCALNRANKS")
		p.JobID = e.get("PMI_JOBID")
		p.Why = "MPICH/Intel MPI (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID): process-level"
	default:
		p.Rank = e.int("PMIX_RANK")
		if !e.has("WORLD_SIZE") {
			e.errs = append(e.errs, "PMIX_RANK is set but the world size is not: pass WORLD_SIZE")
			return p
		}
		p.WorldSize = e.int("WORLD_SIZE")
		p.LocalRank, p.LocalWorldSize = e.optInt("LOCAL_RANK"), e.optInt("LOCAL_WORLD_SIZE")
		p.JobID = e.get("PMIX_NAMESPACE")
		p.Why = "PMIx (PMIX_RANK, WORLD_SIZE): process-level"
	}
	if p.LocalWorldSize < 1 {
		p.LocalWorldSize = 1
	}
	// Homogeneous placement: node = rank / processes per node.
	p.NodeRank = p.Rank / p.LocalWorldSize
	p.NNodes = (p.WorldSize + p.LocalWorldSize - 1) / p.LocalWorldSize
	masterFromEnv(e, &p)
	if p.MasterAddr == "" && p.WorldSize > 1 {
		if p.LocalWorldSize >= p.WorldSize {
			p.MasterAddr = "127.0.0.1"
		} else {
			e.errs = append(e.errs, "MASTER_ADDR is not set: pass it to every rank (mpirun -x MASTER_ADDR=<rank-0 host>)")
		}
	}
	return p
}

func kubeflowPlatform(e *envReader) Platform {
	p := Platform{Style: "kubeflow"}
	masterFromEnv(e, &p)
	if v := e.get("PET_NNODES"); v != "" {
		n, err := parseNNodes(v)
		if err != nil {
			e.errs = append(e.errs, "PET_NNODES: "+err.Error())
		}
		p.NNodes = n
	}
	if e.has("PET_NODE_RANK") {
		p.NodeRank = e.int("PET_NODE_RANK")
	} else {
		p.NodeRank = e.optInt("RANK")
	}
	if v := e.get("PET_NPROC_PER_NODE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			p.NProcPerNode = n
		}
	}
	p.JobID = e.get("PET_RDZV_ID")
	p.Why = "Kubeflow PyTorchJob (PET_NNODES set): nodes=PET_NNODES, node rank=PET_NODE_RANK, procs per node=PET_NPROC_PER_NODE; WORLD_SIZE/RANK ignored"
	return p
}

func dlcPlatform(e *envReader) Platform {
	p := Platform{Style: "dlc"}
	masterFromEnv(e, &p)
	p.NNodes, p.NodeRank = e.optInt("WORLD_SIZE"), e.optInt("RANK")
	if p.NNodes == 0 {
		p.NNodes = 1
	}
	p.NProcPerNode = e.optInt("KUBERNETES_CONTAINER_RESOURCE_GPU")
	p.Why = "PAI-DLC (KUBERNETES_CONTAINER_RESOURCE_GPU set): node-level, nodes=WORLD_SIZE, node rank=RANK, procs per node=KUBERNETES_CONTAINER_RESOURCE_GPU"
	return p
}

// parseNNodes reads --nnodes: N or MIN:MAX with MIN == MAX (static membership only).
func parseNNodes(v string) (int, error) {
	lo, hi, isRange := strings.Cut(v, ":")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 {
		return 0, fmt.Errorf("want N or N:N with N ≥ 1, got %q", v)
	}
	if isRange {
		b, err := strconv.Atoi(hi)
		if err != nil || b != a {
			return 0, fmt.Errorf("elastic membership %q (MIN:MAX with MIN≠MAX) is not supported; give a fixed node count", v)
		}
	}
	return a, nil
}
