package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultShutdownTimeout bounds how long Stop waits for requests in flight.
const DefaultShutdownTimeout = 5 * time.Second

// Server serves a handler (New's) on a TCP address with the timeouts a
// small operator endpoint needs. Create it with NewServer, run it with
// Start, end it with Stop.
type Server struct {
	addr    string
	handler http.Handler
	log     *slog.Logger

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
	stopOnce sync.Once
}

// NewServer returns a server for handler on addr (host:port; port 0 picks
// a free one, see Addr). A nil logger means slog.Default().
func NewServer(addr string, handler http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{addr: addr, handler: handler, log: log, done: make(chan struct{})}
}

// Start listens and serves in the background. It returns once the address
// is bound, so that a busy port is a start-up error, not a log line.
// Cancelling ctx stops the server like Stop.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return fmt.Errorf("web: server on %s already started", s.addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("web: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Responses can be large (a task's response); slow clients still
		// may not hold a connection forever.
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.Info("web: serving pages, API, health and metrics", "addr", ln.Addr().String())
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web: server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.done:
		}
	}()
	return nil
}

// Addr returns the bound address, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop stops accepting connections and waits up to
// DefaultShutdownTimeout for requests in flight, then closes the rest.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			s.log.Warn("web: requests still running at shutdown; closing them", "error", err)
			srv.Close()
		}
		<-s.done
	})
}
