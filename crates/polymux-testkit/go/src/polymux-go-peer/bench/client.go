package bench

// The client role: one session to the server, one scenario, figures on a "RESULT k=v ..." line
// with the same keys and definitions as crates/polymux-bench/src/client.rs.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	writeChunk      = 64 * 1024
	scenarioLimit   = 600 * time.Second
	maxOpens        = 10000000
	rpcWarmup       = 200
	openMsg         = 16
	burstMsg        = 1024
	rpcMsg          = 64
	idleSettleLimit = 20 * time.Second
	// idleBatch: streams opened before waiting for the server to hold them (see IDLE_BATCH in
	// src/client.rs).
	idleBatch = 128
	idlePoll  = 2 * time.Millisecond
	idleQuiet = 300 * time.Millisecond
	// ifaceSize: the interface value the application keeps per idle stream.
	ifaceSize = 16
	// wan-rpc (see wan_rpc in src/client.rs): round trips start wanRpcLead after the bulk,
	// go on for wanRpcSecs at most, with gaps uniform in [0, wanRpcMaxGapUs) µs.
	wanRpcLead     = time.Second
	wanRpcSecs     = 6 * time.Second
	wanRpcMaxGapUs = 50000
)

type figure struct {
	key, value string
}

func client(l lib, scenario, connect, control string, sz sizes) error {
	time.AfterFunc(scenarioLimit, func() { fail("scenario exceeded the time limit") })
	ctl, err := dialControl(control)
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp4", connect)
	if err != nil {
		return err
	}
	conn.(*net.TCPConn).SetNoDelay(true)
	sess, err := newSession(l, conn, true)
	if err != nil {
		return err
	}
	var figs []figure
	switch scenario {
	case "bulk":
		figs, err = transfer(sess, ctl, sz.size, 1)
	case "multi":
		figs, err = transfer(sess, ctl, sz.size, sz.streams)
	case "open-rate":
		figs, err = openRate(sess, sz.openSecs)
	case "burst":
		figs, err = burst(sess, sz.burst)
	case "idle":
		figs, err = idle(sess, ctl, sz.idle)
	case "rpc":
		figs, err = rpc(sess, sz.rpc)
	case "wan-rpc":
		figs, err = wanRpc(sess, sz)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		return err
	}
	parts := make([]string, len(figs))
	for i, f := range figs {
		parts[i] = f.key + "=" + f.value
	}
	fmt.Println("RESULT " + strings.Join(parts, " "))
	// No graceful teardown: the figure is taken and the parent stops the server.
	os.Exit(0)
	return nil
}

func f(key string, format string, v interface{}) figure {
	return figure{key, fmt.Sprintf(format, v)}
}

func transfer(sess session, ctl *controlConn, size uint64, streams int) ([]figure, error) {
	per := size / uint64(streams)
	first := size - per*uint64(streams-1)
	s0, err := ctl.stats()
	if err != nil {
		return nil, err
	}
	u0, y0 := cpuMicros()
	start := time.Now()
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ {
		n := per
		if i == 0 {
			n = first
		}
		go func(n uint64) {
			st, err := sess.Open()
			if err != nil {
				errs <- err
				return
			}
			errs <- push(st, n)
		}(n)
	}
	for i := 0; i < streams; i++ {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	secs := time.Since(start).Seconds()
	u1, y1 := cpuMicros()
	s1, err := ctl.stats()
	if err != nil {
		return nil, err
	}
	gib := float64(size) / float64(1<<30)
	cpu := float64(u1-u0+y1-y0) / 1e6
	return []figure{
		f("mibps", "%.1f", float64(size)/secs/float64(1<<20)),
		f("secs", "%.4f", secs),
		f("client_cpu_per_gib", "%.4f", cpu/gib),
		f("server_cpu_per_gib", "%.4f", (s1.cpuSecs()-s0.cpuSecs())/gib),
	}, nil
}

var payload = bytes.Repeat([]byte{0xA5}, writeChunk)

func push(st io.ReadWriteCloser, n uint64) error {
	defer st.Close()
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], n)
	if _, err := st.Write(hdr[:]); err != nil {
		return err
	}
	for left := n; left > 0; {
		c := uint64(writeChunk)
		if left < c {
			c = left
		}
		if _, err := st.Write(payload[:c]); err != nil {
			return err
		}
		left -= c
	}
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		return fmt.Errorf("read the sink's count: %w", err)
	}
	if got := binary.LittleEndian.Uint64(hdr[:]); got != n {
		return fmt.Errorf("the sink read %d bytes of %d", got, n)
	}
	return nil
}

func echoOnce(st io.ReadWriter, msg, back []byte) error {
	if _, err := st.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(st, back); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if !bytes.Equal(msg, back) {
		return fmt.Errorf("echo mismatch")
	}
	return nil
}

func openRate(sess session, secs float64) ([]figure, error) {
	msg := bytes.Repeat([]byte{0x5A}, openMsg)
	back := make([]byte, openMsg)
	d := time.Duration(secs * float64(time.Second))
	start := time.Now()
	count := 0
	for time.Since(start) < d && count < maxOpens {
		st, err := sess.Open()
		if err != nil {
			return nil, err
		}
		if err := echoOnce(st, msg, back); err != nil {
			return nil, err
		}
		st.Close()
		count++
	}
	el := time.Since(start).Seconds()
	return []figure{f("per_sec", "%.1f", float64(count)/el), f("count", "%d", count)}, nil
}

func burst(sess session, n int) ([]figure, error) {
	start := time.Now()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			msg := bytes.Repeat([]byte{byte(i % 251)}, burstMsg)
			back := make([]byte, burstMsg)
			st, err := sess.Open()
			if err != nil {
				errs <- err
				return
			}
			err = echoOnce(st, msg, back)
			st.Close()
			errs <- err
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	ms := time.Since(start).Seconds() * 1e3
	return []figure{f("ms", "%.2f", ms)}, nil
}

func rpc(sess session, n int) ([]figure, error) {
	msg := bytes.Repeat([]byte{0x3C}, rpcMsg)
	back := make([]byte, rpcMsg)
	st, err := sess.Open()
	if err != nil {
		return nil, err
	}
	for i := 0; i < rpcWarmup; i++ {
		if err := echoOnce(st, msg, back); err != nil {
			return nil, err
		}
	}
	lat := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := echoOnce(st, msg, back); err != nil {
			return nil, err
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
	}
	st.Close()
	sort.Float64s(lat)
	pick := func(q float64) float64 {
		i := int(float64(len(lat)) * q)
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return lat[i]
	}
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	return []figure{
		f("p50_us", "%.2f", pick(0.50)),
		f("p99_us", "%.2f", pick(0.99)),
		f("mean_us", "%.2f", sum/float64(len(lat))),
	}, nil
}

// wanRpc: a bulk stream of 2 × wanSize bytes and 64-byte echoes on a second stream of the same
// session, from wanRpcLead after the bulk starts for wanRpcSecs or until it ends; the bulk is
// not waited for (the orchestrator takes its rate from the relay). As wan_rpc in src/client.rs.
func wanRpc(sess session, sz sizes) ([]figure, error) {
	msg := bytes.Repeat([]byte{0x3C}, rpcMsg)
	back := make([]byte, rpcMsg)
	st, err := sess.Open()
	if err != nil {
		return nil, err
	}
	if _, err := st.Write([]byte{tagEcho}); err != nil {
		return nil, err
	}
	if err := echoOnce(st, msg, back); err != nil {
		return nil, err
	}
	t := time.Now()
	if err := echoOnce(st, msg, back); err != nil {
		return nil, err
	}
	idleMs := float64(time.Since(t).Nanoseconds()) / 1e6

	size := 2 * sz.wanSize
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		b, err := sess.Open()
		if err == nil {
			_, err = b.Write([]byte{tagSink})
		}
		if err == nil {
			err = push(b, size)
		}
		done <- err
	}()
	finished := false
	var bulkErr error
	select {
	case bulkErr = <-done:
		finished = true
	case <-time.After(wanRpcLead):
	}
	lat := make([]float64, 0, sz.wanRpc)
	seed := uint64(0x9E3779B97F4A7C15)
	for !finished && len(lat) < sz.wanRpc && time.Since(start) < wanRpcLead+wanRpcSecs {
		t := time.Now()
		if err := echoOnce(st, msg, back); err != nil {
			return nil, err
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1e6)
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		select {
		case bulkErr = <-done:
			finished = true
		case <-time.After(time.Duration(seed%wanRpcMaxGapUs) * time.Microsecond):
		}
	}
	if bulkErr != nil {
		return nil, bulkErr
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("the bulk ended before any round trip beside it")
	}
	sort.Float64s(lat)
	pick := func(q float64) float64 {
		i := int(float64(len(lat)) * q)
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return lat[i]
	}
	return []figure{
		f("p50_ms", "%.2f", pick(0.50)),
		f("p99_ms", "%.2f", pick(0.99)),
		f("max_ms", "%.2f", lat[len(lat)-1]),
		f("samples", "%d", len(lat)),
		f("idle_ms", "%.2f", idleMs),
	}, nil
}

func idle(sess session, ctl *controlConn, n int) ([]figure, error) {
	keep := make([]io.ReadWriteCloser, 0, n)
	time.Sleep(idleQuiet)
	s0, err := ctl.stats()
	if err != nil {
		return nil, err
	}
	rss0 := rssBytes()
	heap0, allocs0 := heap(true)
	for len(keep) < n {
		for i := 0; i < idleBatch && len(keep) < n; i++ {
			st, err := sess.Open()
			if err != nil {
				return nil, fmt.Errorf("open stream %d of %d: %w", len(keep)+1, n, err)
			}
			keep = append(keep, st)
		}
		waited := time.Now()
		for {
			s, err := ctl.stats()
			if err != nil {
				return nil, err
			}
			if int(s["held"]) >= len(keep) {
				break
			}
			if time.Since(waited) > idleSettleLimit {
				return nil, fmt.Errorf("the server holds %v of the %d streams opened after %v", s["held"], len(keep), idleSettleLimit)
			}
			time.Sleep(idlePoll)
		}
	}
	time.Sleep(idleQuiet)
	rss1 := rssBytes()
	heap1, allocs1 := heap(true)
	s1, err := ctl.stats()
	if err != nil {
		return nil, err
	}
	per := func(d float64) string { return fmt.Sprintf("%.0f", d/float64(n)) }
	figs := []figure{
		{"streams", strconv.Itoa(n)},
		{"handle_b", strconv.Itoa(ifaceSize)},
		{"client_rss_b", per(float64(rss1 - rss0))},
		{"server_rss_b", per(s1["rss_b"] - s0["rss_b"])},
		{"client_heap_b", per(float64(heap1-heap0) + ifaceSize*float64(n))},
		{"server_heap_b", per(s1["heap_b"] - s0["heap_b"] + s1["handle_b"]*float64(n))},
		f("client_allocs", "%.2f", float64(allocs1-allocs0)/float64(n)),
		f("server_allocs", "%.2f", (s1["allocs"]-s0["allocs"])/float64(n)),
	}
	runtime.KeepAlive(keep)
	return figs, nil
}

// controlConn is the connection to the server's STATS port.
type controlConn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex
}

type stats map[string]float64

func (s stats) cpuSecs() float64 { return (s["user_us"] + s["sys_us"]) / 1e6 }

func dialControl(addr string) (*controlConn, error) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the control port %s: %w", addr, err)
	}
	return &controlConn{c: c, r: bufio.NewReader(c)}, nil
}

func (c *controlConn) stats() (stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, "STATS\n"); err != nil {
		return nil, err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("the server's STATS reply: %w", err)
	}
	rest := strings.TrimPrefix(strings.TrimSpace(line), "STATS")
	if len(rest) == len(strings.TrimSpace(line)) {
		return nil, fmt.Errorf("unexpected control reply %q", line)
	}
	out := stats{}
	for _, kv := range strings.Fields(rest) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("bad STATS field %q", kv)
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("bad STATS value %q", kv)
		}
		out[k] = x
	}
	return out, nil
}
