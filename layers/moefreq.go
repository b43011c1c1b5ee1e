package layers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MoELayerPattern expands Megatron-Core's --moe-layer-freq for n layers: an integer N
// (an MoE layer every N layers, from the first) or a Python list expression of 0s and 1s
// built with [..], *, + and parentheses, e.g. "([0]+[1]*23)", whose length must be n.
func MoELayerPattern(s string, n int) ([]int, error) {
	s = strings.Trim(strings.TrimSpace(s), `'"`)
	if !strings.Contains(s, "[") {
		f, err := strconv.Atoi(s)
		if err != nil || f < 1 {
			return nil, fmt.Errorf("want a positive integer or a list pattern")
		}
		out := make([]int, n)
		for i := range out {
			if i%f == 0 {
				out[i] = 1
			}
		}
		return out, nil
	}
	p := &patternParser{s: s}
	out, err := p.sum()
	if err == nil && p.i < len(p.s) {
		err = fmt.Errorf("unexpected %q at %d", p.s[p.i:], p.i)
	}
	if err != nil {
		return nil, err
	}
	for i, v := range out {
		if v != 0 && v != 1 {
			return nil, fmt.Errorf("layer %d is %d: want 0 (dense) or 1 (experts)", i, v)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("the pattern has %d layers, the model %d (--num-layers)", len(out), n)
	}
	return out, nil
}

// patternParser reads sum := product ('+' product)*; product := atom ('*' int)*;
// atom := '[' ints ']' | '(' sum ')'; with int * atom allowed too.
type patternParser struct {
	s string
	i int
}

func (p *patternParser) peek() byte {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *patternParser) sum() ([]int, error) {
	out, err := p.product()
	for err == nil && p.peek() == '+' {
		p.i++
		var more []int
		if more, err = p.product(); err == nil {
			out = append(out, more...)
		}
	}
	return out, err
}

func (p *patternParser) product() ([]int, error) {
	reps := 1
	if c := p.peek(); c >= '0' && c <= '9' { // int * atom
		k, err := p.int()
		if err != nil {
			return nil, err
		}
		if p.peek() != '*' {
			return nil, fmt.Errorf("a bare integer at %d", p.i)
		}
		p.i++
		reps = k
	}
	atom, err := p.atom()
	for err == nil && p.peek() == '*' {
		p.i++
		var k int
		if k, err = p.int(); err == nil {
			reps *= k
			if reps > 1<<20 {
				err = fmt.Errorf("the pattern is implausibly long")
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(atom)*reps > 1<<20 {
		return nil, fmt.Errorf("the pattern is implausibly long")
	}
	return slices.Repeat(atom, reps), nil
}

func (p *patternParser) atom() ([]int, error) {
	switch p.peek() {
	case '(':
		p.i++
		out, err := p.sum()
		if err == nil && p.peek() != ')' {
			err = fmt.Errorf("missing ) at %d", p.i)
		}
		p.i++
		return out, err
	case '[':
		p.i++
		var out []int
		for p.peek() != ']' {
			v, err := p.int()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			if p.peek() == ',' {
				p.i++
			} else if p.peek() != ']' {
				return nil, fmt.Errorf("want , or ] at %d", p.i)
			}
		}
		p.i++
		return out, nil
	}
	return nil, fmt.Errorf("want [ or ( at %d", p.i)
}

func (p *patternParser) int() (int, error) {
	p.peek()
	j := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	v, err := strconv.Atoi(p.s[j:p.i])
	if err != nil || v > 1<<20 {
		return 0, fmt.Errorf("want an integer at %d", j)
	}
	return v, nil
}
