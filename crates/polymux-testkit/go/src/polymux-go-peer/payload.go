package main

import (
	"encoding/binary"
	"fmt"
	"io"
)

// xorshift is the payload generator of SCENARIOS.md: xorshift64*, each next() yields 8 bytes
// little-endian, a stream takes them in order. seed = 1 + stream index in the scenario's own
// numbering (not the wire id).
type xorshift struct {
	state uint64
	word  [8]byte
	left  int // unread bytes at the end of word
}

func newXorshift(seed uint64) *xorshift {
	if seed == 0 {
		panic("xorshift seed must be non-zero")
	}
	return &xorshift{state: seed}
}

func (x *xorshift) next() uint64 {
	x.state ^= x.state >> 12
	x.state ^= x.state << 25
	x.state ^= x.state >> 27
	return x.state * 0x2545F4914F6CDD1D
}

// Fill writes the next len(p) payload bytes into p.
func (x *xorshift) Fill(p []byte) {
	for len(p) > 0 && x.left > 0 {
		p[0] = x.word[8-x.left]
		p = p[1:]
		x.left--
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, x.next())
		p = p[8:]
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(x.word[:], x.next())
		x.left = 8
		for len(p) > 0 {
			p[0] = x.word[8-x.left]
			p = p[1:]
			x.left--
		}
	}
}

// payload returns the first n bytes for seed.
func payload(seed uint64, n int) []byte {
	p := make([]byte, n)
	newXorshift(seed).Fill(p)
	return p
}

// writePayload writes n payload bytes of seed to w in 64 KiB chunks.
func writePayload(w io.Writer, seed uint64, n int64) error {
	g := newXorshift(seed)
	buf := make([]byte, 64*1024)
	var done int64
	for done < n {
		c := int64(len(buf))
		if n-done < c {
			c = n - done
		}
		g.Fill(buf[:c])
		if _, err := w.Write(buf[:c]); err != nil {
			return fmt.Errorf("write failed after %d of %d bytes (seed %d): %w", done, n, seed, err)
		}
		done += c
	}
	return nil
}

// verifier checks received bytes against the generator for seed, incrementally.
type verifier struct {
	what string // for messages, e.g. "stream 3 echo"
	seed uint64
	want int64
	got  int64
	gen  *xorshift
	tmp  []byte
}

func newVerifier(what string, seed uint64, want int64) *verifier {
	return &verifier{what: what, seed: seed, want: want, gen: newXorshift(seed)}
}

// check verifies the next chunk of received bytes.
func (v *verifier) check(p []byte) error {
	if v.got+int64(len(p)) > v.want {
		return fmt.Errorf("%s: received more than the expected %d bytes (at least %d)", v.what, v.want, v.got+int64(len(p)))
	}
	if cap(v.tmp) < len(p) {
		v.tmp = make([]byte, len(p))
	}
	exp := v.tmp[:len(p)]
	v.gen.Fill(exp)
	for i := range p {
		if p[i] != exp[i] {
			return fmt.Errorf("%s: byte %d differs (got 0x%02x, want 0x%02x, seed %d)", v.what, v.got+int64(i), p[i], exp[i], v.seed)
		}
	}
	v.got += int64(len(p))
	return nil
}

func (v *verifier) complete() bool { return v.got == v.want }

// literal returns a verifier-like checker for a fixed byte string (e.g. "ok").
type literal struct {
	what string
	want []byte
	got  []byte
}

func (l *literal) check(p []byte) error {
	l.got = append(l.got, p...)
	if len(l.got) > len(l.want) || string(l.got) != string(l.want[:len(l.got)]) {
		got := l.got
		more := ""
		if len(got) > 40 {
			got, more = got[:40], fmt.Sprintf("... (%d bytes so far)", len(l.got))
		}
		return fmt.Errorf("%s: got %q%s, want %q", l.what, got, more, l.want)
	}
	return nil
}

func (l *literal) complete() bool { return len(l.got) == len(l.want) }

// checker is what the receive helpers feed: a seeded payload or a literal.
type checker interface {
	check(p []byte) error
	complete() bool
}

// received reports the byte count seen by a checker, for messages.
func received(c checker) int64 {
	switch c := c.(type) {
	case *verifier:
		return c.got
	case *literal:
		return int64(len(c.got))
	}
	return -1
}

func expected(c checker) int64 {
	switch c := c.(type) {
	case *verifier:
		return c.want
	case *literal:
		return int64(len(c.want))
	}
	return -1
}
