package main

import (
	"fmt"
	"io"

	"github.com/gomegatron/gomegatron/data/gpt"
)

type showCmd struct {
	indexFlags
	SplitName string `name:"split-name" default:"train" enum:"train,valid,test" help:"Which split's samples to show."`
	Start     int    `name:"start" default:"0" help:"First sample index (into the shuffled dataset)."`
	Count     int    `name:"count" default:"4" help:"Number of samples."`
	Text      bool   `name:"text" help:"Print the S+X raw tokens (pad -1) instead of __getitem__'s tokens/labels/loss_mask."`
	tokenizerFlags
}

func (c *showCmd) run(w io.Writer) error {
	dec, err := c.decoder()
	if err != nil {
		return err
	}
	low, ds, err := c.build()
	if err != nil {
		return err
	}
	defer low.Close()
	split, err := gpt.ParseSplitName(c.SplitName)
	if err != nil {
		return err
	}
	d := ds[split]
	if d == nil {
		return fmt.Errorf("--split %q gives the %s split no sequences", c.Split, split)
	}
	if c.Start < 0 || c.Start >= d.Len() {
		return fmt.Errorf("--start %d is outside the %s split's %d samples", c.Start, split, d.Len())
	}
	end := min(d.Len(), c.Start+max(c.Count, 0))
	ix := d.Indices()
	for i := c.Start; i < end; i++ {
		text, docs, err := d.Text(i)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "sample %d  shuffle_index %d  sequences %v\n", i, ix.ShuffleIndex[i], docs)
		if c.Text {
			fmt.Fprintf(w, "  text      %v\n", text)
			if dec != nil {
				fmt.Fprintf(w, "  decoded   %q\n", dec(text))
			}
			continue
		}
		s, err := d.Get(i)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  tokens    %v\n  labels    %v\n  loss_mask %v\n", s.Tokens, s.Labels, s.LossMask)
		if dec != nil {
			fmt.Fprintf(w, "  decoded   %q\n", dec(s.Tokens))
		}
	}
	return nil
}
