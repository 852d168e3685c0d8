// polymux-go-peer: the Go side of the polymux interop tests (see interop/SCENARIOS.md).
//
//	polymux-go-peer -proto yamux|smux1|smux2 -role client|server -addr HOST:PORT -scenario NAME
//	polymux-go-peer -proto yamux|smux1|smux2 -scenario echo-server -addr HOST:PORT -for 60s
//
// -role server listens on -addr (use port 0), prints "LISTENING <host:port>", accepts exactly
// one TCP connection; -role client dials -addr. The TCP dialer is the multiplexer client.
// Result on stdout, last line:
//
//	OK                         exit 0
//	FAIL: <reason>             exit 1
//	FAIL: unsupported: <why>   exit 2  (this library cannot play this scenario in this role;
//	                                    printed before listening/dialing)
//
// Everything is bounded by a 60 s deadline. Library logs go to stderr. The echo-server mode (a
// long-lived echo peer for `polymux bench --connect`, bounded by -for) is in echoserver.go.
//
//	polymux-go-peer bench serve|client ...
//
// runs the Go side of polymux-bench instead (package bench, which documents its arguments).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"polymux-go-peer/bench"
)

const scenarioDeadline = 60 * time.Second

var (
	outMu    sync.Mutex
	finished bool
	phase    atomic.Value // string
	started  = time.Now()
)

func setPhase(p string) { phase.Store(p) }

func currentPhase() string {
	if p, ok := phase.Load().(string); ok {
		return p
	}
	return "?"
}

// finish prints the single result line and exits; later calls (e.g. the deadline racing a
// result) are ignored.
func finish(code int, line string) {
	outMu.Lock()
	if finished {
		outMu.Unlock()
		select {} // the first caller exits the process
	}
	finished = true
	fmt.Fprintln(os.Stdout, line)
	os.Exit(code)
}

func fail(format string, args ...interface{}) {
	finish(1, "FAIL: "+fmt.Sprintf(format, args...))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		bench.Main(os.Args[2:])
		return
	}
	proto := flag.String("proto", "", "yamux | smux1 | smux2")
	role := flag.String("role", "", "client | server")
	addr := flag.String("addr", "", "server: listen address (port 0); client: address to dial")
	scenario := flag.String("scenario", "", "scenario name (see interop/SCENARIOS.md), or echo-server")
	lifetime := flag.Duration("for", 60*time.Second, "echo-server: serve for this long, then exit 0")
	flag.Parse()

	if *scenario == "echo-server" {
		if !knownProto(*proto) || *addr == "" || (*role != "" && *role != "server") {
			fail("usage: -scenario echo-server needs -proto yamux|smux1|smux2 and -addr (and plays the server)")
		}
		runEchoServer(*proto, *addr, *lifetime)
		return
	}

	setPhase("startup")
	time.AfterFunc(scenarioDeadline, func() {
		fail("deadline: %s %s %s did not finish within %v (phase: %s)", *proto, *scenario, *role, scenarioDeadline, currentPhase())
	})

	if !knownProto(*proto) {
		fail("usage: -proto must be yamux, smux1 or smux2 (got %q)", *proto)
	}
	if *role != "client" && *role != "server" {
		fail("usage: -role must be client or server (got %q)", *role)
	}
	if *addr == "" {
		fail("usage: -addr is required")
	}
	if !knownScenario(*scenario) {
		fail("usage: unknown -scenario %q", *scenario)
	}
	if reason := unsupportedReason(*proto, *scenario, *role); reason != "" {
		finish(2, "FAIL: unsupported: "+reason)
	}

	client := *role == "client"
	var conn net.Conn
	if client {
		setPhase("dialing " + *addr)
		c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			fail("dial %s: %v", *addr, err)
		}
		conn = c
	} else {
		setPhase("listening")
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fail("listen %s: %v", *addr, err)
		}
		fmt.Fprintf(os.Stdout, "LISTENING %s\n", ln.Addr().String())
		setPhase("waiting for the TCP connection")
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			fail("accept: %v", err)
		}
		conn = c
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}

	sess, err := newSession(*proto, conn, client, *scenario)
	if err != nil {
		fail("%s session: %v", *proto, err)
	}
	if client {
		err = runClient(sess, *scenario)
	} else {
		err = runServer(sess, *scenario)
	}
	if err != nil {
		fail("%s %s %s: %v", *proto, *scenario, *role, err)
	}

	// Teardown. Everything this side wrote has been handed to the socket (yamux and smux
	// writes wait for the session's writer). The client shuts down its TCP write side and lets
	// the server close first; the server lingers until the client is gone, so it never cuts
	// the connection under a peer that is still verifying.
	setPhase("teardown")
	remaining := scenarioDeadline - time.Since(started) - time.Second
	if client {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		waitPeerGone(sess, minDuration(2*time.Second, remaining))
	} else {
		waitPeerGone(sess, minDuration(5*time.Second, remaining))
	}
	sess.Close()
	finish(0, "OK")
}

// waitPeerGone waits (at most d) until the session notices the peer closed the connection.
func waitPeerGone(sess muxSession, d time.Duration) {
	if d <= 0 {
		return
	}
	gone := make(chan struct{})
	go func() {
		for {
			st, err := sess.Accept()
			if err != nil {
				close(gone)
				return
			}
			st.Close()
		}
	}()
	select {
	case <-gone:
	case <-time.After(d):
	}
}

func knownProto(p string) bool { return p == "yamux" || p == "smux1" || p == "smux2" }

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}
