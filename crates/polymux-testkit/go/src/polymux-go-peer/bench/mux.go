package bench

// The library sessions behind one small interface. Library defaults throughout, except where a
// default would make a scenario fail rather than measure it (noted at the setting). Not the
// interop sessions of ../mux.go: those instrument the connection (the smux client reads through
// a frame sniffer), log to stderr and switch keep-alive on per scenario, which a measurement
// must not pay for.
//
// Library versions (Debian, GOPATH /usr/share/gocode): hashicorp/yamux 0.0+git20190923,
// xtaci/smux 1.5.16.

import (
	"fmt"
	"io"
	"net"

	"github.com/hashicorp/yamux"
	"github.com/xtaci/smux"
)

type lib int

const (
	libYamux lib = iota
	libSmux1
	libSmux2
)

func parseLib(name string) (lib, error) {
	switch name {
	case "go-yamux":
		return libYamux, nil
	case "go-smux1":
		return libSmux1, nil
	case "go-smux2":
		return libSmux2, nil
	}
	return 0, fmt.Errorf("unknown Go implementation %q (go-yamux, go-smux1, go-smux2)", name)
}

type session interface {
	Open() (io.ReadWriteCloser, error)
	Accept() (io.ReadWriteCloser, error)
	Close() error
}

type yamuxSession struct{ s *yamux.Session }

func (y yamuxSession) Open() (io.ReadWriteCloser, error)   { return y.s.OpenStream() }
func (y yamuxSession) Accept() (io.ReadWriteCloser, error) { return y.s.AcceptStream() }
func (y yamuxSession) Close() error                        { return y.s.Close() }

type smuxSession struct{ s *smux.Session }

func (m smuxSession) Open() (io.ReadWriteCloser, error)   { return m.s.OpenStream() }
func (m smuxSession) Accept() (io.ReadWriteCloser, error) { return m.s.AcceptStream() }
func (m smuxSession) Close() error                        { return m.s.Close() }

func newSession(l lib, conn net.Conn, client bool) (session, error) {
	switch l {
	case libYamux:
		cfg := yamux.DefaultConfig()
		// The default backlog of 256 un-accepted streams resets the rest (session.go:609-619);
		// the burst scenario opens 1000 at once. The interop peer uses the same setting.
		cfg.AcceptBacklog = 1024
		if client {
			s, err := yamux.Client(conn, cfg)
			return yamuxSession{s}, err
		}
		s, err := yamux.Server(conn, cfg)
		return yamuxSession{s}, err
	default:
		cfg := smux.DefaultConfig()
		cfg.Version = 1
		if l == libSmux2 {
			cfg.Version = 2
		}
		if client {
			s, err := smux.Client(conn, cfg)
			return smuxSession{s}, err
		}
		s, err := smux.Server(conn, cfg)
		return smuxSession{s}, err
	}
}
