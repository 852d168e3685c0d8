package main

// The "unread" scenario (SCENARIOS.md): stream A is written far beyond the receiver's per-stream
// window and left unread while stream B carries 64 MiB; B must complete, then A is read out.
//
// Per-stream windows hold A back at the sender: hashicorp/yamux grants 256 KiB per stream
// (const.go:100, mux.go:50) and a Write waits for credit; smux v2 grants MaxStreamBuffer
// (64 KiB, mux.go:51) per stream and its Write waits for UPD. smux v1 has no such window (see
// unreadV1Reason), so the scenario is unsupported there.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

const (
	// unreadA is written on A and left unread: far more than any per-stream window involved
	// (256 KiB initial for yamux, net-mux and polymux; 64 KiB for Go smux v2) plus send buffers.
	unreadA = 4 * mib
	// unreadB is what B carries while A is unread.
	unreadB = 64 * mib
)

const unreadV1Reason = "smux v1 has no per-stream flow control (commands SYN/FIN/PSH/NOP only, frame.go:8-18): " +
	"every stream's data is taken from one session token bucket (MaxReceiveBuffer, session.go:349-354) " +
	"and recvLoop stops reading the connection while the bucket is empty (session.go:311-316), so data " +
	"written to a stream that is never read fills the bucket and then stalls every other stream; only " +
	"v2's per-stream windows (UPD) hold an unread stream back at its sender"

// countingWriter counts the bytes its Write calls have accepted.
type countingWriter struct {
	w muxStream
	n int64 // atomic
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	atomic.AddInt64(&c.n, int64(n))
	return n, err
}

// clientUnread: A gets unreadA bytes (seed 1) from a background writer, then FIN; B gets
// unreadB bytes (seed 2); the server answers "ok" on B once it has verified them all, and at
// that moment A's writer must still be blocked. B is closed after the "ok" (read exactly N,
// then close: valid for every library), then A's writer must finish as the server reads A.
func clientUnread(sess muxSession) error {
	setPhase("unread: open A and start writing it")
	a, err := sess.Open()
	if err != nil {
		return fmt.Errorf("open A: %v", err)
	}
	aw := &countingWriter{w: a}
	aDone := make(chan error, 1)
	go func() {
		if err := writePayload(aw, 1, unreadA); err != nil {
			aDone <- fmt.Errorf("A: %v", annotateWrite(sess, err))
			return
		}
		if err := a.Close(); err != nil {
			aDone <- fmt.Errorf("A: close: %v", err)
			return
		}
		aDone <- nil
	}()

	setPhase("unread: 64 MiB on B while A is unread")
	b, err := sess.Open()
	if err != nil {
		return fmt.Errorf("open B: %v", err)
	}
	if err := writePayload(b, 2, unreadB); err != nil {
		return fmt.Errorf("B: %v", annotateWrite(sess, err))
	}
	if err := recvExact(b, &literal{what: "server's ok on B", want: []byte("ok")}); err != nil {
		return fmt.Errorf("B: %v", err)
	}
	select {
	case err := <-aDone:
		if err != nil {
			return err
		}
		return fmt.Errorf("A: all %d bytes were accepted before the server read any of A: nothing held "+
			"A back at the sender, so the scenario proves nothing (per-stream window larger than %d?)",
			unreadA, unreadA)
	default:
	}
	accepted := atomic.LoadInt64(&aw.n)
	if err := b.Close(); err != nil {
		return fmt.Errorf("B: close: %v", err)
	}

	setPhase(fmt.Sprintf("unread: the server reads A (%d of %d bytes had been accepted while unread)", accepted, unreadA))
	select {
	case err := <-aDone:
		if err != nil {
			return err
		}
	case <-time.After(scenarioDeadline):
		return errors.New("A: the writer did not finish") // the process deadline fires first
	}
	return awaitUnreadServer(sess, a, b)
}

// awaitUnreadServer waits until the server has finished (its FIN on A is its last step, after
// B's), so that teardown cannot cut it short; it must have sent nothing on A and "ok" on B.
func awaitUnreadServer(sess muxSession, a, b muxStream) error {
	setPhase("unread: waiting for the server's FINs")
	if !sess.CloseClosesBoth() {
		// yamux: both FINs seen and a ping barrier, then A and B read as EOF (mux.go).
		return confirmEOFAfterHalfClose(sess, []muxStream{a, b})
	}
	// smux dropped both streams at our Close; the FINs are seen on the wire (mux.go).
	for _, st := range []struct {
		name string
		s    muxStream
		want int64
	}{{"B", b, 2}, {"A", a, 0}} {
		sent, err := sess.AwaitPeerFIN(st.s, peerFINWait)
		if err != nil {
			return fmt.Errorf("%s: %v", st.name, err)
		}
		if sent != st.want {
			return fmt.Errorf("%s: the server sent %d data bytes before its FIN, want %d", st.name, sent, st.want)
		}
	}
	return nil
}

// serverUnread: accept A and leave it unread; accept B, verify unreadB bytes (seed 2), answer
// "ok", read B to EOF and close it; only then read A to EOF, verify it (seed 1), close it.
func serverUnread(sess muxSession) error {
	setPhase("unread: accept A (left unread) and B")
	a, err := sess.Accept()
	if err != nil {
		return fmt.Errorf("accept A: %v", err)
	}
	b, err := sess.Accept()
	if err != nil {
		return fmt.Errorf("accept B: %v", err)
	}
	setPhase("unread: reading B while A is unread")
	if err := recvExact(b, newVerifier("B (seed 2; A is unread)", 2, unreadB)); err != nil {
		return err
	}
	if err := writeAll(sess, b, []byte("ok")); err != nil {
		return fmt.Errorf("B: write ok: %v", err)
	}
	if err := recvToEOF(b, &literal{what: "B after the ok", want: nil}); err != nil {
		return err
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("B: close: %v", err)
	}
	setPhase("unread: reading A")
	if err := recvToEOF(a, newVerifier("A (seed 1, read last)", 1, unreadA)); err != nil {
		return err
	}
	if err := a.Close(); err != nil {
		return fmt.Errorf("A: close: %v", err)
	}
	return nil
}
