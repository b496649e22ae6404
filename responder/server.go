package responder

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Responder listening on a free port of 127.0.0.1, in the manner
// of httptest.Server: make it with NewServer, use URL, and Close it.
type Server struct {
	// URL is the responder's base URL, "http://127.0.0.1:port".
	URL string
	// Responder answers the requests; change its statuses and faults at will.
	Responder *Responder

	listener net.Listener
	srv      *http.Server
	done     chan struct{}
	once     sync.Once
}

// NewServer starts r on a free loopback port. It panics if it cannot
// listen, as httptest.NewServer does: it is meant for tests.
func NewServer(r *Responder) *Server {
	s, err := Listen("127.0.0.1:0", r)
	if err != nil {
		panic("responder: " + err.Error())
	}
	return s
}

// Listen starts r on addr (host:port; port 0 picks a free one).
func Listen(addr string, r *Responder) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:       "http://" + l.Addr().String(),
		Responder: r,
		listener:  l,
		srv:       &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second},
		done:      make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Issue mints a leaf certificate signed by the responder's CA whose AIA
// OCSP URL points at this server (unless opts names its own), and records it
// as good.
func (s *Server) Issue(opts LeafOptions) (*Leaf, error) {
	if len(opts.OCSPServer) == 0 {
		opts.OCSPServer = []string{s.URL}
	}
	leaf, err := s.Responder.ca.Issue(opts)
	if err != nil {
		return nil, err
	}
	s.Responder.SetStatus(leaf.Cert.SerialNumber, Good())
	return leaf, nil
}

// Close stops the server, ending requests in flight (hanging ones
// included), and waits until it has stopped.
func (s *Server) Close() {
	s.once.Do(func() {
		s.srv.Close()
		<-s.done
	})
}
