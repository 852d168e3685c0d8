package bench

// The server role: prints "LISTENING <data> <control>", serves every data connection as a
// session whose streams are sunk, echoed or held (see impls::Mode on the Rust side), answers
// STATS on the control listener, and exits when stdin closes.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	sinkBuf   = 128 * 1024
	echoBuf   = 16 * 1024
	closeWait = 30 * time.Second
	tagSink   = 'S'
	tagEcho   = 'E'
)

func serve(l lib, mode, listen string) error {
	switch mode {
	case "sink", "echo", "hold", "mixed":
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	data, err := net.Listen("tcp4", listen)
	if err != nil {
		return err
	}
	ctl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("LISTENING %s %s\n", data.Addr(), ctl.Addr())
	go func() {
		// Exit when the parent closes our stdin (or dies).
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	go controlLoop(ctl, mode == "hold")
	var mu sync.Mutex
	var keep []io.ReadWriteCloser // hold mode: streams kept, no goroutine each
	if mode == "hold" {
		keep = make([]io.ReadWriteCloser, 0, 16*1024)
	}
	for {
		conn, err := data.Accept()
		if err != nil {
			return err
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		go func() {
			sess, err := newSession(l, conn, false)
			if err != nil {
				fmt.Fprintln(os.Stderr, "serve: session:", err)
				return
			}
			for {
				st, err := sess.Accept()
				if err != nil {
					return
				}
				switch mode {
				case "sink":
					go sink(st)
				case "echo":
					go echo(st)
				case "mixed":
					go mixed(st)
				case "hold":
					mu.Lock()
					keep = append(keep, st)
					mu.Unlock()
					atomic.AddInt64(&held, 1)
				}
			}
		}()
	}
}

func sink(st io.ReadWriteCloser) {
	defer st.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		return
	}
	want := binary.LittleEndian.Uint64(hdr[:])
	buf := make([]byte, sinkBuf)
	var got uint64
	for got < want {
		chunk := buf
		if left := want - got; left < uint64(len(chunk)) {
			chunk = chunk[:left]
		}
		n, err := st.Read(chunk)
		got += uint64(n)
		if err != nil {
			break
		}
	}
	binary.LittleEndian.PutUint64(hdr[:], got)
	if _, err := st.Write(hdr[:]); err != nil {
		return
	}
	// Wait (bounded) for the client's close, then close.
	done := make(chan struct{})
	go func() { st.Read(buf[:1]); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

// mixed: the stream's first byte says what it is: 'S' a sink, 'E' an echo (impls::Mode::Mixed).
func mixed(st io.ReadWriteCloser) {
	var tag [1]byte
	if _, err := io.ReadFull(st, tag[:]); err != nil {
		st.Close()
		return
	}
	switch tag[0] {
	case tagSink:
		sink(st)
	case tagEcho:
		echo(st)
	default:
		fmt.Fprintf(os.Stderr, "serve: unknown stream tag %#x\n", tag[0])
		st.Close()
	}
}

func echo(st io.ReadWriteCloser) {
	defer st.Close()
	buf := make([]byte, echoBuf)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func controlLoop(ctl net.Listener, hold bool) {
	for {
		c, err := ctl.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewScanner(c)
			for r.Scan() {
				reply := fmt.Sprintf("ERR unknown command %q", r.Text())
				if r.Text() == "STATS" {
					reply = statsLine(hold)
				}
				if _, err := fmt.Fprintln(c, reply); err != nil {
					return
				}
			}
		}()
	}
}
