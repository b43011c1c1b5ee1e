package nccl

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomegatron/gomegatron/comm/store"
	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// InitFromEnv joins the world golaunch describes (the variables comm/tcp.InitFromEnv
// reads: RANK, WORLD_SIZE, GOMEGATRON_STORE_ADDR, GOMEGATRON_JOB_TOKEN,
// TORCHELASTIC_RESTART_COUNT, GOMEGATRON_COMM_TIMEOUT) on GPU dev, loading libnccl.so.2
// from the same search order as the CUDA libraries. Without WORLD_SIZE (or with 1) it
// builds a one-rank communicator, no store needed.
func InitFromEnv(ctx context.Context, dev *cuda.Device, o Options) (*Comm, error) {
	lib, err := Load(dl.SearchFromEnv(os.Getenv))
	if err != nil {
		return nil, fmt.Errorf("comm/nccl: %w", err)
	}
	size, rank := 1, 0
	if ws := os.Getenv("WORLD_SIZE"); ws != "" {
		if size, err = strconv.Atoi(ws); err != nil || size < 1 {
			return nil, fmt.Errorf("comm/nccl: WORLD_SIZE=%q is not a positive integer", ws)
		}
	}
	if size > 1 {
		if rank, err = strconv.Atoi(os.Getenv("RANK")); err != nil || rank < 0 || rank >= size {
			return nil, fmt.Errorf("comm/nccl: RANK=%q is not a rank of a world of size %d", os.Getenv("RANK"), size)
		}
	}
	if o.Timeout == 0 {
		if v := os.Getenv("GOMEGATRON_COMM_TIMEOUT"); v != "" {
			if o.Timeout, err = parseTimeout(v); err != nil {
				return nil, fmt.Errorf("comm/nccl: GOMEGATRON_COMM_TIMEOUT=%q: %w", v, err)
			}
		}
	}
	if o.Prefix == "" {
		o.Prefix = "comm/nccl/" + os.Getenv("TORCHELASTIC_RESTART_COUNT")
	}
	var st Store
	if size > 1 {
		addr := os.Getenv("GOMEGATRON_STORE_ADDR")
		if addr == "" {
			return nil, fmt.Errorf("comm/nccl: WORLD_SIZE=%d but GOMEGATRON_STORE_ADDR is not set (start workers with golaunch)", size)
		}
		c, err := store.Dial(ctx, addr, os.Getenv("GOMEGATRON_JOB_TOKEN"))
		if err != nil {
			return nil, fmt.Errorf("comm/nccl: store %s: %w", addr, err)
		}
		defer c.Close() // only needed for the unique id
		st = c
	}
	return New(ctx, lib, dev, rank, size, st, o)
}

// parseTimeout accepts a Go duration ("90s") or a number of seconds.
func parseTimeout(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 {
		return 0, fmt.Errorf("want a positive duration (90s) or seconds")
	}
	return time.Duration(s * float64(time.Second)), nil
}
