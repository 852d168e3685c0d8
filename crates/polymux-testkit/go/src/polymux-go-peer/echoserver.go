package main

// Echo-server mode, a long-lived peer for `polymux bench --connect` (not a scenario):
//
//	polymux-go-peer -proto yamux|smux1|smux2 -scenario echo-server -addr 127.0.0.1:0 -for 60s
//
// Listens on -addr, prints "LISTENING <host:port>", and serves every TCP connection that
// arrives as a session of -proto (the peer is the multiplexer server): every inbound stream is
// echoed until EOF and then closed, exactly like the echo scenarios' server side. After -for it
// prints "OK: ..." with what it served and exits 0 by itself. A stream that fails is reported on
// stderr ("echo-server: conn N stream M: ...") and counted in the final line, so the caller can
// tell a library limitation from a client bug.

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// maxEchoServerLifetime bounds -for.
const maxEchoServerLifetime = time.Hour

type echoStats struct {
	conns, streams, failed, bytes int64 // atomic
}

func runEchoServer(proto, addr string, lifetime time.Duration) {
	if lifetime <= 0 || lifetime > maxEchoServerLifetime {
		fail("usage: -for must be in (0, %v] (got %v)", maxEchoServerLifetime, lifetime)
	}
	var stats echoStats
	time.AfterFunc(lifetime, func() {
		finish(0, fmt.Sprintf("OK: echo-server served %d connection(s), %d stream(s), %d bytes echoed, %d stream(s) failed",
			atomic.LoadInt64(&stats.conns), atomic.LoadInt64(&stats.streams),
			atomic.LoadInt64(&stats.bytes), atomic.LoadInt64(&stats.failed)))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail("listen %s: %v", addr, err)
	}
	fmt.Fprintf(os.Stdout, "LISTENING %s\n", ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		n := atomic.AddInt64(&stats.conns, 1)
		go serveEchoConn(proto, conn, n, &stats)
	}
}

// serveEchoConn runs one session until the client ends it.
func serveEchoConn(proto string, conn net.Conn, n int64, stats *echoStats) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	// As the scenarios' server: yamux gets an accept backlog of 1024 (the bench opens 1000
	// streams at once; the default 256 would RST the rest, session.go:609-619).
	sess, err := newSession(proto, conn, false, "echo-server")
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo-server: conn %d: %s session: %v\n", n, proto, err)
		conn.Close()
		return
	}
	defer sess.Close()
	for id := 1; ; id++ {
		st, err := sess.Accept()
		if err != nil {
			return // the client closed the session
		}
		atomic.AddInt64(&stats.streams, 1)
		go func(id int, st muxStream) {
			var counted int64
			err := echo(sess, st, -1, func(_, written int64) error {
				atomic.AddInt64(&stats.bytes, written-counted)
				counted = written
				return nil
			})
			if err != nil && !sess.Closed() {
				atomic.AddInt64(&stats.failed, 1)
				fmt.Fprintf(os.Stderr, "echo-server: conn %d stream %d: %v\n", n, id, err)
			}
		}(id, st)
	}
}
