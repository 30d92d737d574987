package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Server serves the control API on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen creates the socket at path with mode 0600 (its directory with
// 0755 if missing). A stale socket left by a crashed daemon is replaced; a
// socket another daemon still answers on is an error.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another ovlsw is already running with control socket %s: stop it, or pass a different --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &Server{path: path, ln: ln, done: make(chan struct{})}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests with h until Close. It returns at once; requests
// are served on their own goroutines.
func (s *Server) Serve(h http.Handler, log *slog.Logger) {
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket stopped", "err", err)
		}
	}()
}

// Close stops serving and removes the socket file. Idempotent.
func (s *Server) Close() error {
	if s.srv == nil {
		err := s.ln.Close()
		os.Remove(s.path)
		return ignoreClosed(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	os.Remove(s.path)
	return ignoreClosed(err)
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// WriteJSON writes v as an indented JSON answer.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an Error answer.
func WriteError(w http.ResponseWriter, code int, err error) {
	WriteJSON(w, code, Error{Error: err.Error()})
}
