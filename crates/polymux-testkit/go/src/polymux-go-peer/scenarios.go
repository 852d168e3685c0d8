package main

// The scenarios of interop/SCENARIOS.md, written once against muxSession/muxStream.

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	kib = 1024
	mib = 1024 * 1024

	greeting = "hello from server\n"
)

var scenarios = []string{
	"echo100", "bulk64", "open1000", "greet", "halfclose", "reset-by-client", "reset-by-server",
	"goaway-by-client", "goaway-by-server", "ping", "idle", "unread",
}

func knownScenario(name string) bool {
	for _, s := range scenarios {
		if s == name {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- receive helpers

// recvExact reads until c is complete, never reading past it; EOF or an error before that fails.
func recvExact(st muxStream, c checker) error {
	buf := make([]byte, 32*kib)
	for !c.complete() {
		want := expected(c) - received(c)
		if want > int64(len(buf)) {
			want = int64(len(buf))
		}
		n, err := st.Read(buf[:want])
		if n > 0 {
			if cerr := c.check(buf[:n]); cerr != nil {
				return cerr
			}
			continue // an error that came with data shows up again on the next Read
		}
		if err != nil && !c.complete() {
			return fmt.Errorf("read failed after %d of %d expected bytes: %v", received(c), expected(c), err)
		}
	}
	return nil
}

// recvToEOF reads to EOF on a stream this side has not closed; c must be complete at EOF.
func recvToEOF(st muxStream, c checker) error {
	buf := make([]byte, 32*kib)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if cerr := c.check(buf[:n]); cerr != nil {
				return cerr
			}
			continue // an error that came with data shows up again on the next Read
		}
		if err == io.EOF {
			if !c.complete() {
				return fmt.Errorf("EOF after %d of %d expected bytes", received(c), expected(c))
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read failed after %d of %d expected bytes: %v", received(c), expected(c), err)
		}
	}
}

// recvAfterHalfClose reads what the peer sends on a stream this side half-closes (or has
// half-closed: *closed is set just before Close is called). With a library whose Read gives a
// premature EOF after a local Close (yamux, see mux.go) an EOF seen after *closed is retried
// until c is complete; the real end of the stream must then be confirmed with
// confirmEOFAfterHalfClose. Otherwise the EOF is awaited here.
func recvAfterHalfClose(sess muxSession, st muxStream, c checker, closed *int32) error {
	buf := make([]byte, 32*kib)
	backoff := time.Millisecond
	for !c.complete() {
		n, err := st.Read(buf)
		if n > 0 {
			backoff = time.Millisecond
			if cerr := c.check(buf[:n]); cerr != nil {
				return cerr
			}
			// An error that came with data shows up again on the next Read. (yamux Read
			// returns the error of the window update it sends after reading, stream.go:116-122,
			// e.g. ErrSessionShutdown when the peer has closed the connection meanwhile.)
			continue
		}
		if err == io.EOF && sess.PrematureEOFAfterClose() && atomic.LoadInt32(closed) == 1 {
			time.Sleep(backoff)
			if backoff < 5*time.Millisecond {
				backoff *= 2
			}
			continue
		}
		if err == io.EOF && !c.complete() {
			return fmt.Errorf("EOF after %d of %d expected bytes", received(c), expected(c))
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read failed after %d of %d expected bytes: %v", received(c), expected(c), err)
		}
	}
	if sess.PrematureEOFAfterClose() {
		return nil // see confirmEOFAfterHalfClose
	}
	n, err := st.Read(buf)
	if n > 0 {
		return c.check(buf[:n]) // reports the excess
	}
	if err != io.EOF {
		return fmt.Errorf("after all %d expected bytes: want EOF, got %v", expected(c), err)
	}
	return nil
}

// confirmEOFAfterHalfClose establishes the peer's FIN on every stream in streams (all of this
// session's streams, each half-closed by this side and with all expected bytes received) for a
// library with the premature-EOF behaviour: wait until the session has dropped them (both FINs
// seen), do a Ping round trip as a barrier, then every Read must give 0 bytes and io.EOF.
func confirmEOFAfterHalfClose(sess muxSession, streams []muxStream) error {
	if !sess.PrematureEOFAfterClose() {
		return nil
	}
	setPhase(fmt.Sprintf("waiting for the peer's FIN on %d half-closed stream(s)", len(streams)))
	for sess.NumStreams() > 0 {
		if sess.Closed() {
			if n := sess.NumStreams(); n > 0 {
				return fmt.Errorf("session closed before the peer's FIN on %d stream(s)", n)
			}
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := sess.Ping(); err != nil && !sess.Closed() {
		return fmt.Errorf("ping (used as a barrier after the peer's FIN) failed: %v", err)
	}
	buf := make([]byte, 1024)
	for i, st := range streams {
		n, err := st.Read(buf)
		if n > 0 {
			return fmt.Errorf("stream %d: %d unexpected bytes after the expected data", i, n)
		}
		if err != io.EOF {
			return fmt.Errorf("stream %d: want EOF after the expected data, got %v", i, err)
		}
	}
	return nil
}

// expectReset keeps reading until the stream ends; it must end in a reset, not EOF or data.
func expectReset(sess muxSession, st muxStream) error {
	buf := make([]byte, 32*kib)
	var extra int
	for {
		n, err := st.Read(buf)
		extra += n
		if err == nil || n > 0 {
			continue
		}
		if extra > 0 {
			return fmt.Errorf("received %d unexpected bytes before the stream ended (%v)", extra, err)
		}
		if sess.IsReset(err) {
			return nil
		}
		if err == io.EOF {
			return errors.New("stream ended with a clean EOF, want a reset")
		}
		return fmt.Errorf("stream ended with %v, want a reset", err)
	}
}

func writeAll(sess muxSession, st muxStream, p []byte) error {
	if _, err := st.Write(p); err != nil {
		return annotateWrite(sess, err)
	}
	return nil
}

func annotateWrite(sess muxSession, err error) error {
	if hint := sess.WriteErrHint(errors.Unwrap(err)); hint != "" {
		return fmt.Errorf("%v [%s]", err, hint)
	}
	if hint := sess.WriteErrHint(err); hint != "" {
		return fmt.Errorf("%v [%s]", err, hint)
	}
	return err
}

// ---------------------------------------------------------------- echo (server side)

// echo copies st back to itself until EOF, then half-closes. progress (may be nil) is called
// after every read and after every write with the totals so far. expect >= 0 checks the total.
func echo(sess muxSession, st muxStream, expect int64, progress func(read, written int64) error) error {
	buf := make([]byte, 32*kib)
	var rd, wr int64
	for {
		n, err := st.Read(buf)
		if n > 0 {
			rd += int64(n)
			if progress != nil {
				if perr := progress(rd, wr); perr != nil {
					return perr
				}
			}
			if _, werr := st.Write(buf[:n]); werr != nil {
				return fmt.Errorf("echo: write failed after %d bytes echoed: %v", wr, annotateWrite(sess, werr))
			}
			wr += int64(n)
			if progress != nil {
				if perr := progress(rd, wr); perr != nil {
					return perr
				}
			}
		}
		if n > 0 && err != nil && err != io.EOF {
			continue // an error that came with data shows up again on the next Read
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("echo: read failed after %d bytes: %v", rd, err)
		}
	}
	if expect >= 0 && rd != expect {
		return fmt.Errorf("echo: stream carried %d bytes, want %d", rd, expect)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("echo: close: %v", err)
	}
	return nil
}

// acceptEcho accepts n streams and echoes each (size bytes expected on each). The first error
// (of an accept or of any echo) ends it.
func acceptEcho(sess muxSession, n int, size int64) error {
	setPhase(fmt.Sprintf("accepting and echoing %d stream(s)", n))
	errs := make(chan error, n+2)
	var wg sync.WaitGroup
	wg.Add(n)
	go func() {
		for i := 0; i < n; i++ {
			st, err := sess.Accept()
			if err != nil {
				errs <- fmt.Errorf("accept of stream %d of %d: %v", i+1, n, err)
				return
			}
			go func(i int, st muxStream) {
				defer wg.Done()
				if err := echo(sess, st, size, nil); err != nil {
					errs <- fmt.Errorf("accepted stream %d: %v", i, err)
				}
			}(i, st)
		}
	}()
	go func() { wg.Wait(); errs <- nil }()
	return <-errs
}

// ---------------------------------------------------------------- client echo pattern

// clientEcho opens n streams concurrently; stream i writes size bytes (seed i+1), half-closes,
// reads the echo to EOF and verifies it. The echo is read concurrently with writing (otherwise
// flow control deadlocks once the echo fills this side's receive window). A library that cannot
// read after its own half-close (smux) plays clientEchoExact instead.
func clientEcho(sess muxSession, n int, size int64) error {
	if sess.CloseClosesBoth() {
		return clientEchoExact(sess, n, size)
	}
	setPhase(fmt.Sprintf("client echo on %d stream(s) of %d bytes", n, size))
	streams := make([]muxStream, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := sess.Open()
			if err != nil {
				errs <- fmt.Errorf("stream %d: open: %v", i, err)
				return
			}
			streams[i] = st
			v := newVerifier(fmt.Sprintf("stream %d echo", i), uint64(i+1), size)
			var closed int32
			rd := make(chan error, 1)
			go func() { rd <- recvAfterHalfClose(sess, st, v, &closed) }()
			if err := writePayload(st, uint64(i+1), size); err != nil {
				errs <- fmt.Errorf("stream %d: %v", i, annotateWrite(sess, err))
				return
			}
			atomic.StoreInt32(&closed, 1)
			if err := st.Close(); err != nil {
				errs <- fmt.Errorf("stream %d: half-close: %v", i, err)
				return
			}
			if err := <-rd; err != nil {
				errs <- fmt.Errorf("stream %d: %v", i, err)
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case err := <-errs:
		return err
	case <-done:
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	return confirmEOFAfterHalfClose(sess, streams)
}

// peerFINWait bounds the wait for the server's FIN after the client's (clientEchoExact).
const peerFINWait = 10 * time.Second

// clientEchoExact is the echo client for a library whose Close closes both directions (smux, see
// mux.go), the SCENARIOS.md variant "read exactly N bytes, then close": stream i writes size
// bytes (seed i+1) while reading the echo, reads exactly size bytes and verifies them, and only
// then closes (FIN). The server sees all size bytes, then EOF, and half-closes; smux drops that
// FIN (the stream is gone), so it is confirmed on the wire, together with the server having sent
// exactly size bytes, before the stream counts as done (and so before the session is torn down).
func clientEchoExact(sess muxSession, n int, size int64) error {
	setPhase(fmt.Sprintf("client echo (read exactly N, then close) on %d stream(s) of %d bytes", n, size))
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := echoExactOne(sess, i, size); err != nil {
				errs <- fmt.Errorf("stream %d: %v", i, err)
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case err := <-errs:
		return err
	case <-done:
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	return nil
}

func echoExactOne(sess muxSession, i int, size int64) error {
	st, err := sess.Open()
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	seed := uint64(i + 1)
	rd := make(chan error, 1)
	go func() { rd <- recvExact(st, newVerifier(fmt.Sprintf("stream %d echo", i), seed, size)) }()
	if err := writePayload(st, seed, size); err != nil {
		return annotateWrite(sess, err)
	}
	if err := <-rd; err != nil {
		return err
	}
	// All size bytes are written and their echo is read: only now send FIN.
	if err := st.Close(); err != nil {
		return fmt.Errorf("close (FIN) after the whole echo: %v", err)
	}
	sent, err := sess.AwaitPeerFIN(st, peerFINWait)
	if err != nil {
		return err
	}
	if sent != size {
		return fmt.Errorf("the server sent %d data bytes on the stream before its FIN, want exactly %d "+
			"(bytes after the first %d are dropped by smux once the stream is closed)", sent, size, size)
	}
	return nil
}

// ---------------------------------------------------------------- GoAway helpers

// waitOpenGoAway: open() must fail with the GoAway error; other errors are retried every 20 ms
// for at most 5 s; a successful open fails the scenario. The caller has already made sure the
// peer's GoAway has been processed (see the callers), because an open before that would succeed.
func waitOpenGoAway(sess muxSession) error {
	setPhase("waiting for open() to fail with GoAway")
	limit := time.Now().Add(5 * time.Second)
	for {
		st, err := sess.Open()
		if err == nil {
			st.Close()
			return errors.New("open() succeeded after the peer's GoAway, want a GoAway error")
		}
		if sess.IsGoAway(err) {
			return nil
		}
		if time.Now().After(limit) {
			return fmt.Errorf("open() did not fail with a GoAway error within 5 s (last error: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- client side

func runClient(sess muxSession, scenario string) error {
	switch scenario {
	case "unread":
		return clientUnread(sess)
	case "echo100":
		return clientEcho(sess, 100, mib)
	case "bulk64":
		return clientEcho(sess, 1, 64*mib)
	case "open1000":
		return clientEcho(sess, 1000, kib)
	case "idle":
		setPhase("idle for 1.5 s")
		time.Sleep(1500 * time.Millisecond)
		if sess.Closed() {
			return errors.New("session closed while idle (keep-alive failed)")
		}
		return clientEcho(sess, 1, kib)

	case "greet":
		setPhase("greet: reading the greeting")
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		if err := recvToEOF(st, &literal{what: "greeting", want: []byte(greeting)}); err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close: %v", err)
		}
		return nil

	case "halfclose":
		setPhase("halfclose: first 64 KiB and the server's reply")
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		rd := make(chan error, 1)
		go func() { rd <- recvToEOF(st, &literal{what: "server reply", want: []byte("ok")}) }()
		if err := writePayload(st, 1, 64*kib); err != nil {
			return annotateWrite(sess, err)
		}
		if err := <-rd; err != nil {
			return err
		}
		setPhase("halfclose: second 64 KiB after the server's EOF")
		if err := writePayload(st, 2, 64*kib); err != nil {
			return fmt.Errorf("after the server's half-close: %v", annotateWrite(sess, err))
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close: %v", err)
		}
		return nil

	case "reset-by-client":
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		if err := writePayload(st, 1, kib); err != nil {
			return annotateWrite(sess, err)
		}
		if err := recvExact(st, &literal{what: "server reply", want: []byte("r")}); err != nil {
			return err
		}
		return errors.New("cannot reset a stream: " + errUnsupported.Error()) // unreachable: unsupportedReason

	case "reset-by-server":
		setPhase("reset-by-server: waiting for the reset")
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		if err := writeAll(sess, st, []byte("x")); err != nil {
			return err
		}
		return expectReset(sess, st)

	case "goaway-by-client", "goaway-by-server":
		setPhase(scenario + ": first 1 KiB")
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open A: %v", err)
		}
		if err := writePayload(st, 1, kib); err != nil {
			return annotateWrite(sess, err)
		}
		if err := recvExact(st, newVerifier("A echo (seed 1)", 1, kib)); err != nil {
			return err
		}
		if scenario == "goaway-by-client" {
			setPhase("goaway-by-client: sending GoAway")
			if err := sess.GoAway(); err != nil {
				return fmt.Errorf("GoAway: %v", err)
			}
		} else {
			// The server sends GoAway after echoing the first 1 KiB; nothing of ours is ordered
			// after it, so use a ping round trip (plus 20 ms) as the barrier before the first
			// open() attempt, which would otherwise succeed.
			setPhase("goaway-by-server: ping barrier")
			if _, err := sess.Ping(); err != nil {
				return fmt.Errorf("ping (barrier before open): %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			if err := waitOpenGoAway(sess); err != nil {
				return err
			}
		}
		setPhase(scenario + ": second 1 KiB")
		v := newVerifier("A echo (seed 2)", 2, kib)
		var closed int32
		rd := make(chan error, 1)
		go func() { rd <- recvAfterHalfClose(sess, st, v, &closed) }()
		if err := writePayload(st, 2, kib); err != nil {
			return annotateWrite(sess, err)
		}
		atomic.StoreInt32(&closed, 1)
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close A: %v", err)
		}
		if err := <-rd; err != nil {
			return err
		}
		return confirmEOFAfterHalfClose(sess, []muxStream{st})

	case "ping":
		setPhase("ping")
		if _, err := sess.Ping(); err != nil {
			return fmt.Errorf("ping: %v", err)
		}
		setPhase("ping: bye stream")
		st, err := sess.Open()
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		var closed int32
		rd := make(chan error, 1)
		go func() {
			rd <- recvAfterHalfClose(sess, st, &literal{what: "echo", want: []byte("bye")}, &closed)
		}()
		if err := writeAll(sess, st, []byte("bye")); err != nil {
			return err
		}
		atomic.StoreInt32(&closed, 1)
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close: %v", err)
		}
		if err := <-rd; err != nil {
			return err
		}
		return confirmEOFAfterHalfClose(sess, []muxStream{st})
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}

// ---------------------------------------------------------------- server side

func runServer(sess muxSession, scenario string) error {
	switch scenario {
	case "unread":
		return serverUnread(sess)
	case "echo100":
		return acceptEcho(sess, 100, mib)
	case "bulk64":
		return acceptEcho(sess, 1, 64*mib)
	case "open1000":
		return acceptEcho(sess, 1000, kib)
	case "idle":
		return acceptEcho(sess, 1, kib)

	case "greet":
		setPhase("greet: accept")
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept: %v", err)
		}
		if err := writeAll(sess, st, []byte(greeting)); err != nil {
			return err
		}
		var closed int32 = 1 // set before Close
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close: %v", err)
		}
		// On smux this final check is vacuous: after Close, Read gives io.EOF at once and the
		// client's later frames for the stream are dropped (see mux.go). On yamux it is real.
		setPhase("greet: reading to EOF after half-close")
		if err := recvAfterHalfClose(sess, st, &literal{what: "client data", want: nil}, &closed); err != nil {
			return err
		}
		return confirmEOFAfterHalfClose(sess, []muxStream{st})

	case "halfclose":
		setPhase("halfclose: accept and first 64 KiB")
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept: %v", err)
		}
		if err := recvExact(st, newVerifier("first 64 KiB (seed 1)", 1, 64*kib)); err != nil {
			return err
		}
		if err := writeAll(sess, st, []byte("ok")); err != nil {
			return err
		}
		var closed int32 = 1
		if err := st.Close(); err != nil {
			return fmt.Errorf("half-close: %v", err)
		}
		setPhase("halfclose: second 64 KiB after half-close")
		if err := recvAfterHalfClose(sess, st, newVerifier("second 64 KiB (seed 2)", 2, 64*kib), &closed); err != nil {
			return err
		}
		return confirmEOFAfterHalfClose(sess, []muxStream{st})

	case "reset-by-client":
		setPhase("reset-by-client: accept and 1 KiB")
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept: %v", err)
		}
		if err := recvExact(st, newVerifier("1 KiB (seed 1)", 1, kib)); err != nil {
			return err
		}
		if err := writeAll(sess, st, []byte("r")); err != nil {
			return err
		}
		setPhase("reset-by-client: waiting for the reset")
		return expectReset(sess, st)

	case "reset-by-server":
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept: %v", err)
		}
		if err := recvExact(st, &literal{what: "client byte", want: []byte("x")}); err != nil {
			return err
		}
		return errors.New("cannot reset a stream: " + errUnsupported.Error()) // unreachable: unsupportedReason

	case "goaway-by-client", "goaway-by-server":
		setPhase(scenario + ": accept A")
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept A: %v", err)
		}
		firstEchoed := make(chan struct{})
		moreRead := make(chan struct{})
		var once1, once2 sync.Once
		progress := func(rd, wr int64) error {
			if wr >= kib {
				var gaErr error
				once1.Do(func() {
					if scenario == "goaway-by-server" {
						// Sent from the echo goroutine right after the first 1 KiB was written.
						if err := sess.GoAway(); err != nil {
							gaErr = fmt.Errorf("GoAway: %v", err)
						}
					}
					close(firstEchoed)
				})
				if gaErr != nil {
					return gaErr
				}
			}
			if rd > kib {
				once2.Do(func() { close(moreRead) })
			}
			return nil
		}
		echoed := make(chan error, 1)
		go func() { echoed <- echo(sess, st, 2*kib, progress) }()
		if scenario == "goaway-by-client" {
			setPhase("goaway-by-client: echoing the first 1 KiB")
			select {
			case <-firstEchoed:
			case err := <-echoed:
				if err == nil {
					err = errors.New("stream A ended before its first 1 KiB was echoed")
				}
				return err
			}
			// Barrier: the client sends GoAway before the second 1 KiB, and frames are
			// processed in order, so once a byte past the first 1 KiB has been read the GoAway
			// has been processed; an open() before that would succeed.
			setPhase("goaway-by-client: waiting for data after the client's GoAway")
			select {
			case <-moreRead:
			case err := <-echoed:
				if err != nil {
					return err
				}
				// The echo may finish right after the second 1 KiB arrived, and select picks
				// among ready cases at random: the barrier was passed if that 1 KiB was read.
				select {
				case <-moreRead:
				default:
					return errors.New("stream A ended before the second 1 KiB")
				}
				return waitOpenGoAway(sess)
			case <-time.After(5 * time.Second):
				return errors.New("no data after the first 1 KiB within 5 s (the client sends its second 1 KiB after GoAway)")
			}
			if err := waitOpenGoAway(sess); err != nil {
				return err
			}
		}
		setPhase(scenario + ": echoing A to EOF")
		return <-echoed

	case "ping":
		setPhase("ping")
		if _, err := sess.Ping(); err != nil {
			return fmt.Errorf("ping: %v", err)
		}
		setPhase("ping: echo one stream")
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept: %v", err)
		}
		return echo(sess, st, 3, nil)
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}
