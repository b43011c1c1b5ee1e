package launch

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Layout is the resolved job shape: flags first, then the platform's environment, then
// torchrun's defaults.
type Layout struct {
	Style        string // env style that supplied values ("" = none found)
	Why          string
	Warning      string
	ProcessLevel bool // spawn nothing: this process is rank Rank

	NNodes, NodeRank, NProcPerNode int
	MasterAddr                     string
	MasterPort                     int // 0 with Standalone: the store picks a port
	Standalone                     bool

	Rank, WorldSize, LocalRank, LocalWorldSize int // process level
	AgentStore                                 string

	RunID, Role     string
	MaxRestarts     int
	MonitorInterval time.Duration
	GracePeriod     time.Duration
	JobID           string

	// Source says where each of nnodes, node_rank, nproc_per_node, master_addr and
	// master_port came from: a flag, a PET_ variable, the platform, or "default".
	Source map[string]string
}

// Defaults, as torchrun's.
const (
	DefaultMasterAddr      = "127.0.0.1"
	DefaultMasterPort      = 29500
	DefaultMonitorInterval = 100 * time.Millisecond
	DefaultGracePeriod     = 30 * time.Second
)

// Resolve merges the flags with the platform environment read through getenv.
func Resolve(o *Options, getenv func(string) string) (*Layout, error) {
	_, nprocGiven := o.Given["nproc-per-node"]
	p, err := DetectPlatform(o.EnvStyle, getenv, nprocGiven)
	if err != nil {
		return nil, err
	}
	l := &Layout{Style: p.Style, Why: p.Why, Warning: p.Warning, JobID: p.JobID, AgentStore: p.AgentStore,
		Source: map[string]string{}}
	if p.ProcessLevel {
		// Only command-line flags turn a process-level platform into a spawning launcher:
		// PET_* variables are inherited by workers and must not make them spawn again.
		for _, f := range []string{"nproc-per-node", "nnodes", "node-rank"} {
			if strings.HasPrefix(o.Given[f], "--") {
				l.Warning = fmt.Sprintf("--%s given: ignoring the process-level %s environment's ranks and spawning workers", f, p.Style)
				p.ProcessLevel = false
			}
		}
	}
	l.ProcessLevel = p.ProcessLevel
	if p.ProcessLevel {
		l.Rank, l.WorldSize, l.LocalRank, l.LocalWorldSize = p.Rank, p.WorldSize, p.LocalRank, p.LocalWorldSize
		l.NProcPerNode = p.LocalWorldSize
	}

	pick := func(key string, flagVal string, platVal string) string {
		if src, ok := o.Given[key]; ok {
			l.Source[key] = src
			return flagVal
		}
		if platVal != "" && platVal != "0" {
			l.Source[key] = p.Style + " environment"
			return platVal
		}
		l.Source[key] = "default"
		return ""
	}
	itoa := strconv.Itoa

	nn := pick("nnodes", o.NNodes, itoa(p.NNodes))
	if nn == "" {
		nn = "1"
	}
	if l.NNodes, err = parseNNodes(nn); err != nil {
		return nil, fmt.Errorf("%s: %w", srcName(l.Source["nnodes"], "--nnodes"), err)
	}
	if v := pick("node-rank", itoa(o.NodeRank), itoa(p.NodeRank)); v != "" {
		l.NodeRank, _ = strconv.Atoi(v)
	}
	if !p.ProcessLevel {
		np := pick("nproc-per-node", o.NProcPerNode, itoa(p.NProcPerNode))
		if l.NProcPerNode, err = parseNProc(np, getenv); err != nil {
			return nil, fmt.Errorf("%s: %w", srcName(l.Source["nproc-per-node"], "--nproc-per-node"), err)
		}
	} else {
		l.Source["nproc-per-node"] = p.Style + " environment"
	}

	// --rdzv-endpoint host:port stands for the master address and port when those are not given.
	if o.RdzvEndpoint != "" {
		h, port, err := net.SplitHostPort(o.RdzvEndpoint)
		if err != nil {
			h, port = o.RdzvEndpoint, ""
		}
		if _, ok := o.Given["master-addr"]; !ok {
			o.MasterAddr = h
			o.Given["master-addr"] = srcName(o.Given["rdzv-endpoint"], "--rdzv-endpoint")
		}
		if _, ok := o.Given["master-port"]; !ok && port != "" {
			if o.MasterPort, err = strconv.Atoi(port); err != nil {
				return nil, fmt.Errorf("--rdzv-endpoint %q: bad port", o.RdzvEndpoint)
			}
			o.Given["master-port"] = srcName(o.Given["rdzv-endpoint"], "--rdzv-endpoint")
		}
	}
	if l.MasterAddr = pick("master-addr", o.MasterAddr, p.MasterAddr); l.MasterAddr == "" {
		l.MasterAddr = DefaultMasterAddr
	}
	l.MasterPort = DefaultMasterPort
	if v := pick("master-port", itoa(o.MasterPort), itoa(p.MasterPort)); v != "" {
		l.MasterPort, _ = strconv.Atoi(v)
	}
	if l.MasterPort < 0 || l.MasterPort > 65535 {
		return nil, fmt.Errorf("%s: port %d outside 0..65535", srcName(l.Source["master-port"], "--master-port"), l.MasterPort)
	}

	l.Standalone = o.Standalone
	l.RunID = o.RunID
	if l.Standalone {
		if l.NNodes != 1 {
			return nil, fmt.Errorf("--standalone runs one node, but %s says %d nodes", srcName(l.Source["nnodes"], "--nnodes"), l.NNodes)
		}
		l.MasterAddr, l.MasterPort = DefaultMasterAddr, 0
		l.Source["master-addr"], l.Source["master-port"] = "--standalone", "--standalone"
		if l.RunID == "" {
			l.RunID = randomID()
		}
	}
	if l.RunID == "" {
		l.RunID = "none"
	}
	if l.NodeRank < 0 || l.NodeRank >= l.NNodes {
		return nil, fmt.Errorf("%s: node rank %d outside 0..%d (%d nodes)", srcName(l.Source["node-rank"], "--node-rank"), l.NodeRank, l.NNodes-1, l.NNodes)
	}
	if l.Role = o.Role; l.Role == "" {
		l.Role = "default"
	}
	if o.MaxRestarts < 0 {
		return nil, fmt.Errorf("--max-restarts %d: must be ≥ 0", o.MaxRestarts)
	}
	l.MaxRestarts = o.MaxRestarts
	if l.MonitorInterval = o.MonitorInterval; l.MonitorInterval <= 0 {
		l.MonitorInterval = DefaultMonitorInterval
	}
	if _, ok := o.Given["grace-period"]; ok {
		l.GracePeriod = o.GracePeriod
	} else {
		l.GracePeriod = DefaultGracePeriod
	}
	switch o.RdzvBackend {
	case "", "static", "c10d":
	default:
		return nil, fmt.Errorf("--rdzv-backend %q: golaunch serves static and c10d from its own store; etcd is not supported", o.RdzvBackend)
	}
	return l, nil
}

func srcName(src, flag string) string {
	if src == "" || src == "default" {
		return flag
	}
	return src
}

// parseNProc reads --nproc-per-node: an integer, "gpu" (visible GPUs), "cpu" (logical
// CPUs) or "auto" (GPUs when there are any, else CPUs), as torchrun.
func parseNProc(v string, getenv func(string) string) (int, error) {
	switch v {
	case "":
		return 1, nil
	case "cpu":
		return runtime.NumCPU(), nil
	case "gpu":
		n := gpuCount(getenv)
		if n == 0 {
			return 0, fmt.Errorf("gpu: no NVIDIA GPU visible")
		}
		return n, nil
	case "auto":
		if n := gpuCount(getenv); n > 0 {
			return n, nil
		}
		return runtime.NumCPU(), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive integer, gpu, cpu or auto, got %q", v)
	}
	return n, nil
}

// gpuCount counts NVIDIA GPUs from the driver's /proc entries, limited by
// CUDA_VISIBLE_DEVICES when that is set.
func gpuCount(getenv func(string) string) int {
	ents, _ := os.ReadDir("/proc/driver/nvidia/gpus")
	n := len(ents)
	if v := getenv("CUDA_VISIBLE_DEVICES"); v != "" && n > 0 {
		n = min(n, len(strings.Split(v, ",")))
	}
	return n
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// WorldSize of a node-level layout: nodes × processes per node (static, homogeneous).
func (l *Layout) worldSize() int {
	if l.ProcessLevel {
		return l.WorldSize
	}
	return l.NNodes * l.NProcPerNode
}

// Print writes the resolved layout, as torchrun logs its launch configuration.
func (l *Layout) Print(w io.Writer, entrypoint string) {
	style := l.Style
	if style == "" {
		style = "none (flags and defaults)"
	}
	mode := "node-level: golaunch spawns the local workers"
	if l.ProcessLevel {
		mode = fmt.Sprintf("process-level: this process is rank %d of %d (local rank %d of %d); nothing is spawned",
			l.Rank, l.WorldSize, l.LocalRank, l.LocalWorldSize)
	}
	port := strconv.Itoa(l.MasterPort)
	if l.Standalone {
		port = "(free port)"
	}
	src := func(k string) string { return " (" + l.Source[k] + ")" }
	fmt.Fprintf(w, "golaunch: starting with launch layout:\n")
	fmt.Fprintf(w, "  entrypoint       : %s\n", entrypoint)
	fmt.Fprintf(w, "  env_style        : %s\n", style)
	if l.Why != "" {
		fmt.Fprintf(w, "  interpretation   : %s\n", l.Why)
	}
	fmt.Fprintf(w, "  mode             : %s\n", mode)
	fmt.Fprintf(w, "  nnodes           : %d%s\n", l.NNodes, src("nnodes"))
	fmt.Fprintf(w, "  node_rank        : %d%s\n", l.NodeRank, src("node-rank"))
	fmt.Fprintf(w, "  nproc_per_node   : %d%s\n", l.NProcPerNode, src("nproc-per-node"))
	fmt.Fprintf(w, "  world_size       : %d\n", l.worldSize())
	fmt.Fprintf(w, "  master           : %s:%s (addr %s, port %s)\n", l.MasterAddr, port, l.Source["master-addr"], l.Source["master-port"])
	fmt.Fprintf(w, "  run_id           : %s\n", l.RunID)
	fmt.Fprintf(w, "  max_restarts     : %d\n", l.MaxRestarts)
	if l.Warning != "" {
		fmt.Fprintf(w, "golaunch: warning: %s\n", l.Warning)
	}
}
