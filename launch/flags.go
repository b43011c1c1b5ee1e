// Package launch is golaunch's launcher agent: it parses torchrun's flags, resolves the job
// layout from those flags and the platform's environment (PAI-DLC, Kubeflow, Slurm, MPI),
// hosts the rendezvous store, spawns one worker process per local rank with torchrun's
// environment, streams and logs their output, and handles failures, restarts and signals the
// way torch.distributed.run (torchrun) does.
package launch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Options are the launcher flags as given, before the layout is resolved against the
// platform environment. Every flag keeps torchrun's name, accepts the underscore spelling
// (--nproc_per_node) and falls back to the PET_<DEST> environment variable torchrun reads.
type Options struct {
	NProcPerNode     string // int | cpu | gpu | auto
	NNodes           string // N or N:N (elastic MIN:MAX with MIN<MAX is not supported)
	NodeRank         int
	MasterAddr       string
	MasterPort       int
	Standalone       bool
	MaxRestarts      int
	MonitorInterval  time.Duration
	LogDir           string
	Redirects        string // 0|1|2|3 or per local rank "0:1,1:2"
	Tee              string
	LocalRanksFilter string // "0,1": local ranks whose output reaches the console
	RunID            string
	Role             string
	EnvStyle         string // auto | torch | dlc | kubeflow | slurm | mpi
	RdzvBackend      string // static | c10d: both served by golaunch's own store
	RdzvEndpoint     string // host[:port]: the store's address instead of master addr:port
	GracePeriod      time.Duration

	// Given maps the canonical name of every flag set on the command line or by its PET_
	// variable to where it came from ("--nnodes" or "PET_NNODES").
	Given map[string]string
}

// flagSpec describes one launcher flag.
type flagSpec struct {
	name    string   // canonical torchrun name, without dashes
	aliases []string // other spellings (without dashes), short flags as "r"
	env     string   // PET_* fallback ("" for none)
	isBool  bool
	hidden  bool
	help    string
	set     func(o *Options, v string) error
}

func intFlag(dst func(*Options) *int) func(*Options, string) error {
	return func(o *Options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		*dst(o) = n
		return nil
	}
}

func strFlag(dst func(*Options) *string) func(*Options, string) error {
	return func(o *Options, v string) error { *dst(o) = v; return nil }
}

// durationFlag accepts seconds as a number (torchrun's float seconds) or a Go duration.
func durationFlag(dst func(*Options) *time.Duration) func(*Options, string) error {
	return func(o *Options, v string) error {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
			*dst(o) = time.Duration(f * float64(time.Second))
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want seconds or a duration, got %q", v)
		}
		*dst(o) = d
		return nil
	}
}

var flagSpecs = []flagSpec{
	{name: "nproc-per-node", aliases: []string{"nproc"}, env: "PET_NPROC_PER_NODE", help: "worker processes per node: int, gpu, cpu or auto (default 1)",
		set: strFlag(func(o *Options) *string { return &o.NProcPerNode })},
	{name: "nnodes", env: "PET_NNODES", help: "number of nodes, N or N:N (default 1)",
		set: strFlag(func(o *Options) *string { return &o.NNodes })},
	{name: "node-rank", env: "PET_NODE_RANK", help: "rank of this node (default 0)",
		set: intFlag(func(o *Options) *int { return &o.NodeRank })},
	{name: "master-addr", env: "PET_MASTER_ADDR", help: "address of node 0, which hosts the store (default 127.0.0.1)",
		set: strFlag(func(o *Options) *string { return &o.MasterAddr })},
	{name: "master-port", env: "PET_MASTER_PORT", help: "store port on node 0 (default 29500)",
		set: intFlag(func(o *Options) *int { return &o.MasterPort })},
	{name: "standalone", env: "PET_STANDALONE", isBool: true, help: "single node: pick a free port and a random run id",
		set: func(o *Options, v string) error { b, err := parseBool(v); o.Standalone = b; return err }},
	{name: "max-restarts", env: "PET_MAX_RESTARTS", help: "restarts of the worker group before failing (default 0)",
		set: intFlag(func(o *Options) *int { return &o.MaxRestarts })},
	{name: "monitor-interval", env: "PET_MONITOR_INTERVAL", help: "seconds between checks of other nodes' state (default 0.1)",
		set: durationFlag(func(o *Options) *time.Duration { return &o.MonitorInterval })},
	{name: "log-dir", env: "PET_LOG_DIR", help: "base directory of per-rank logs and error files",
		set: strFlag(func(o *Options) *string { return &o.LogDir })},
	{name: "redirects", aliases: []string{"r"}, env: "PET_REDIRECTS", help: "send std streams to log files only: 0 none, 1 stdout, 2 stderr, 3 both, or per local rank 0:1,1:2",
		set: strFlag(func(o *Options) *string { return &o.Redirects })},
	{name: "tee", aliases: []string{"t"}, env: "PET_TEE", help: "copy std streams to log files and the console (same values as --redirects)",
		set: strFlag(func(o *Options) *string { return &o.Tee })},
	{name: "local-ranks-filter", env: "PET_LOCAL_RANKS_FILTER", help: "comma-separated local ranks shown on the console",
		set: strFlag(func(o *Options) *string { return &o.LocalRanksFilter })},
	{name: "rdzv-id", aliases: []string{"run-id"}, env: "PET_RDZV_ID", help: "job id, TORCHELASTIC_RUN_ID (default none)",
		set: strFlag(func(o *Options) *string { return &o.RunID })},
	{name: "role", env: "PET_ROLE", help: "worker role, ROLE_NAME and the log prefix (default default)",
		set: strFlag(func(o *Options) *string { return &o.Role })},
	{name: "env-style", env: "PET_ENV_STYLE", help: "platform environment: auto, torch, dlc, kubeflow, slurm or mpi (default auto)",
		set: strFlag(func(o *Options) *string { return &o.EnvStyle })},
	{name: "rdzv-backend", env: "PET_RDZV_BACKEND", help: "static or c10d; both use golaunch's store",
		set: strFlag(func(o *Options) *string { return &o.RdzvBackend })},
	{name: "rdzv-endpoint", env: "PET_RDZV_ENDPOINT", help: "host[:port] of the store (default master-addr:master-port)",
		set: strFlag(func(o *Options) *string { return &o.RdzvEndpoint })},
	{name: "no-python", env: "PET_NO_PYTHON", isBool: true, help: "accepted for torchrun compatibility; golaunch never starts python itself",
		set: func(*Options, string) error { return nil }},
	{name: "grace-period", env: "GOLAUNCH_GRACE_PERIOD", hidden: true, help: "seconds between SIGTERM and SIGKILL when stopping workers (default 30)",
		set: durationFlag(func(o *Options) *time.Duration { return &o.GracePeriod })},
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("want a boolean, got %q", v)
}

func lookupFlag(name string) *flagSpec {
	name = strings.ReplaceAll(name, "_", "-")
	for i := range flagSpecs {
		f := &flagSpecs[i]
		if f.name == name {
			return f
		}
		for _, a := range f.aliases {
			if a == name {
				return f
			}
		}
	}
	return nil
}

// ErrHelp is returned by ParseArgs for -h/--help.
var ErrHelp = errors.New("help requested")

// ParseArgs parses launcher flags up to the first positional argument (or "--"): that
// argument is the command and everything after it belongs to the command, untouched.
// Flags not given on the command line are read from their PET_* variables through getenv.
func ParseArgs(args []string, getenv func(string) string) (*Options, []string, error) {
	o := &Options{Given: map[string]string{}}
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		if a == "-h" || a == "--help" {
			return nil, nil, ErrHelp
		}
		var name, val string
		hasVal := false
		if strings.HasPrefix(a, "--") {
			name, val, hasVal = strings.Cut(a[2:], "=")
		} else {
			// Short flags: -r 3, -r3, -r=3.
			name = a[1:2]
			if rest := a[2:]; rest != "" {
				val, hasVal = strings.TrimPrefix(rest, "="), true
			}
		}
		f := lookupFlag(name)
		long := strings.HasPrefix(a, "--")
		if f == nil || long == (len(name) == 1) {
			return nil, nil, fmt.Errorf("unknown launcher flag %s (see golaunch --help)", a)
		}
		if !hasVal && !f.isBool {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("launcher flag %s needs a value", a)
			}
			i++
			val = args[i]
		}
		if err := f.set(o, val); err != nil {
			return nil, nil, fmt.Errorf("launcher flag --%s: %w", f.name, err)
		}
		o.Given[f.name] = "--" + f.name
		i++
	}
	for _, f := range flagSpecs {
		if _, ok := o.Given[f.name]; ok || f.env == "" {
			continue
		}
		if v, ok := lookupEnv(getenv, f.env); ok {
			if err := f.set(o, v); err != nil {
				return nil, nil, fmt.Errorf("environment %s: %w", f.env, err)
			}
			o.Given[f.name] = f.env
		}
	}
	return o, args[i:], nil
}

func lookupEnv(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

// FlagsGiven reports whether any launcher flag was set, on the command line or by PET_*.
func (o *Options) FlagsGiven() bool { return len(o.Given) > 0 }

// Usage is the launcher part of golaunch's help text.
func Usage() string {
	var b strings.Builder
	b.WriteString("launcher flags (torchrun's; --x_y spellings and PET_X_Y variables also accepted):\n")
	for _, f := range flagSpecs {
		if f.hidden {
			continue
		}
		names := "--" + f.name
		for _, a := range f.aliases {
			if len(a) == 1 {
				names = "-" + a + ", " + names
			} else {
				names += ", --" + a
			}
		}
		fmt.Fprintf(&b, "  %-32s %s\n", names, f.help)
	}
	return b.String()
}
