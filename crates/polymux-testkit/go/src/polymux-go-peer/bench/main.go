// Package bench is the Go side of polymux-bench: the hashicorp/yamux and xtaci/smux (v1, v2)
// sessions, server and client, speaking exactly the protocol of the Rust bench children
// (crates/polymux-bench/src/server.rs and client.rs), so the orchestrator runs it in their
// place. The program polymux-go-peer runs it as its `bench` subcommand:
//
//	polymux-go-peer bench serve  --impl go-yamux --mode sink|echo|hold --listen 127.0.0.1:0 --threads N
//	polymux-go-peer bench client --impl go-yamux --scenario bulk --connect A --control A [sizes] --threads N
//
// main.go owns the command line and the process lifecycle; mux.go the library sessions;
// serve.go and client.go the two roles; stats.go the process's own figures.
package bench

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
)

// Main runs `bench ARGS...` (args without the program name and `bench`); it exits the process.
func Main(args []string) {
	if len(args) < 1 {
		fail("usage: polymux-go-peer bench serve|client --impl NAME ...")
	}
	sub := args[0]
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	impl := fs.String("impl", "", "go-yamux, go-smux1 or go-smux2")
	threads := fs.Int("threads", 2, "GOMAXPROCS (0 means 1)")
	// serve
	mode := fs.String("mode", "", "sink, echo, hold or mixed")
	listen := fs.String("listen", "127.0.0.1:0", "data address")
	// client
	scenario := fs.String("scenario", "", "bulk, multi, open-rate, burst, idle, rpc, wan-rpc")
	connect := fs.String("connect", "", "the server's data address")
	control := fs.String("control", "", "the server's control address")
	var sz sizes
	fs.Uint64Var(&sz.size, "size", 1<<30, "bulk bytes, multi bytes in total")
	fs.IntVar(&sz.streams, "streams", 64, "multi streams")
	fs.Float64Var(&sz.openSecs, "open-secs", 1, "open-rate seconds")
	fs.IntVar(&sz.burst, "burst", 1000, "burst streams")
	fs.IntVar(&sz.idle, "idle", 10000, "idle streams")
	fs.IntVar(&sz.rpc, "rpc", 10000, "rpc round trips")
	fs.Uint64Var(&sz.wanSize, "wan-size", 64<<20, "WAN bulk bytes (wan-rpc sends twice this)")
	fs.IntVar(&sz.wanRpc, "wan-rpc", 500, "wan-rpc round trips at most")
	if err := fs.Parse(args[1:]); err != nil {
		fail(err.Error())
	}
	lib, err := parseLib(*impl)
	if err != nil {
		fail(err.Error())
	}
	procs := *threads
	if procs < 1 {
		procs = 1
	}
	runtime.GOMAXPROCS(procs)
	switch sub {
	case "serve":
		mustLoopback(*listen)
		if err := serve(lib, *mode, *listen); err != nil {
			fail("serve: " + err.Error())
		}
	case "client":
		mustLoopback(*connect)
		mustLoopback(*control)
		if err := client(lib, *scenario, *connect, *control, sz); err != nil {
			fail("client: " + err.Error())
		}
	default:
		fail("unknown subcommand " + sub)
	}
}

// sizes mirrors args::Sizes on the Rust side.
type sizes struct {
	size     uint64
	streams  int
	openSecs float64
	burst    int
	idle     int
	rpc      int
	wanSize  uint64
	wanRpc   int
}

// mustLoopback: the suite never talks to anything but 127.0.0.1.
func mustLoopback(addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		fail(fmt.Sprintf("only 127.0.0.1 is allowed, got %q", addr))
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "polymux-go-peer bench:", msg)
	os.Exit(1)
}
