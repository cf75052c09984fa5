package sshd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
)

// KeyLookup resolves a public key to its registered owner (keys.Store).
type KeyLookup interface {
	Lookup(ctx context.Context, pk gossh.PublicKey) (keys.Key, error)
}

// Access is the access decision (keys.Local, or Heroku mode's).
type Access interface {
	// Level is u's access to an existing app (NoAccess when it does not exist).
	Level(ctx context.Context, u keys.User, app string) (keys.Level, error)
	// MayCreate says whether u's push may create app.
	MayCreate(ctx context.Context, u keys.User, app string) (bool, error)
	// Exists says whether app is an app, as far as u can tell: the access
	// seam decides what counts as an app, not sshd.
	Exists(ctx context.Context, u keys.User, app string) (bool, error)
}

// Git serves git commands for an app (receiver.Receiver).
type Git interface {
	ReceivePack(ctx context.Context, req receiver.Request) int
	UploadPack(ctx context.Context, req receiver.Request) int
}

// Config tunes the front door.
type Config struct {
	HostKeys         []gossh.Signer
	Version          string        // shown in the SSH banner and `help`
	HandshakeTimeout time.Duration // from TCP accept to an open session; default 30s
	KeepAlive        time.Duration // interval of keepalive requests; default 15s
	KeepAliveMax     int           // unanswered keepalives before the connection is dropped; default 3
	Logger           *slog.Logger
	// Metrics is where the server registers its series (metrics.go); nil
	// keeps them unregistered.
	Metrics prometheus.Registerer
}

// Deps are the front door's collaborators.
type Deps struct {
	Keys     KeyLookup
	Access   Access
	Git      Git
	Commands []Command // commands beyond the built-in help and whoami
}

// Server is the SSH front door.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	srv      *ssh.Server
	commands map[string]*Command
	order    []*Command

	baseCtx context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	metrics *metrics
}

// ctxKey keys values this package stores in a connection's context.
type ctxKey string

const (
	keyConnID     ctxKey = "sokoban-conn-id"
	keyHandshake  ctxKey = "sokoban-handshake-timer"
	keyVerifiedFP ctxKey = "sokoban-verified-fp"
	permFP               = "sokoban-key-fp"
)

// New builds a server; Serve starts it.
func New(cfg Config, deps Deps) *Server {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.KeepAliveMax <= 0 {
		cfg.KeepAliveMax = 3
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: log, commands: map[string]*Command{}}
	s.baseCtx, s.stop = context.WithCancel(context.Background())
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		// Only a second registration on the same registry fails: a wiring bug
		// that must not take the front door down.
		log.Error("metrics", "err", err)
		m, _ = newMetrics(nil)
	}
	s.metrics = m
	for _, c := range append(builtinCommands(s), deps.Commands...) {
		c := c
		s.commands[c.Verb] = &c
		s.order = append(s.order, &c)
	}
	s.srv = &ssh.Server{
		Version:                  "sokoban_" + sanitizeVersion(cfg.Version),
		HostSigners:              toSigners(cfg.HostKeys),
		Handler:                  s.handle,
		PublicKeyHandler:         s.publicKey,
		ServerConfigCallback:     s.serverConfig,
		ConnCallback:             s.connCallback,
		ConnectionFailedCallback: s.connFailed,
		PtyCallback:              func(ssh.Context, ssh.Pty) bool { return false },
		LocalPortForwardingCallback: func(ssh.Context, string, uint32) bool {
			return false
		},
		ReversePortForwardingCallback: func(ssh.Context, string, uint32) bool { return false },
		SessionRequestCallback: func(sess ssh.Session, requestType string) bool {
			return requestType == "exec" || requestType == "shell"
		},
		// Only sessions: no direct-tcpip or other channels.
		ChannelHandlers: map[string]ssh.ChannelHandler{"session": ssh.DefaultSessionHandler},
		RequestHandlers: map[string]ssh.RequestHandler{},
	}
	return s
}

func toSigners(in []gossh.Signer) []ssh.Signer {
	out := make([]ssh.Signer, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

func sanitizeVersion(v string) string {
	b := []byte(v)
	for i, c := range b {
		if c <= ' ' || c == '-' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}

// Serve accepts connections on ln until Close or Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for open ones to finish
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if ctx.Err() != nil {
		s.stop()
	}
	s.wg.Wait()
	return err
}

// Close drops every connection at once; running sessions see their context end.
func (s *Server) Close() error {
	s.stop()
	err := s.srv.Close()
	s.wg.Wait()
	return err
}

// connCallback gives each connection an id and a deadline for the handshake:
// a client that has not opened a session in time is dropped.
func (s *Server) connCallback(ctx ssh.Context, conn net.Conn) net.Conn {
	var b [6]byte
	_, _ = rand.Read(b[:])
	ctx.SetValue(keyConnID, hex.EncodeToString(b[:]))
	timer := time.AfterFunc(s.cfg.HandshakeTimeout, func() {
		s.log.Info("handshake timeout", "conn", ctx.Value(keyConnID), "remote", conn.RemoteAddr().String())
		_ = conn.Close()
	})
	ctx.SetValue(keyHandshake, timer)
	return s.metrics.track(conn)
}

func (s *Server) connFailed(conn net.Conn, err error) {
	s.metrics.handshakeFailed(err)
	if !errors.Is(err, io.EOF) {
		s.log.Info("connection failed", "remote", conn.RemoteAddr().String(), "err", err)
	}
}

// publicKey answers only "is this key registered?" (DESIGN rule 4). It records
// nothing: the key that actually signed is bound in serverConfig's
// VerifiedPublicKeyCallback, and the session resolves the user afresh.
func (s *Server) publicKey(ctx ssh.Context, key ssh.PublicKey) bool {
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.deps.Keys.Lookup(lctx, key)
	if _, refused := errors.AsType[*keys.RefusedError](err); refused {
		// A registered key that may not be used now (Heroku mode): let it sign,
		// so the session can tell the user why before it ends.
		return true
	}
	if err != nil && !errors.Is(err, keys.ErrUnknownKey) {
		s.log.Error("key lookup failed", "conn", ctx.Value(keyConnID), "err", err)
	}
	return err == nil
}

// serverConfig adds what gliderlabs/ssh does not expose: a callback that runs
// only after the client proved it holds the private key, recording that key's
// fingerprint in fresh Permissions.
func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		MaxAuthTries: 6,
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			fp := gossh.FingerprintSHA256(key)
			ctx.SetValue(keyVerifiedFP, fp)
			return &gossh.Permissions{Extensions: map[string]string{permFP: fp}}, nil
		},
	}
}

// identify resolves the session's user from the key that authenticated, after
// the handshake, and checks that every record of that key agrees.
func (s *Server) identify(ctx context.Context, sess ssh.Session) (keys.User, error) {
	pk := sess.PublicKey()
	if pk == nil {
		return keys.User{}, errors.New("no public key")
	}
	fp := gossh.FingerprintSHA256(pk)
	verified, _ := sess.Context().Value(keyVerifiedFP).(string)
	conn, _ := sess.Context().Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if conn == nil || conn.Permissions == nil || conn.Permissions.Extensions[permFP] != fp || verified != fp {
		return keys.User{}, fmt.Errorf("key mismatch: session key %s was not the verified key", fp)
	}
	k, err := s.deps.Keys.Lookup(ctx, pk)
	if err != nil {
		return keys.User{}, err
	}
	return keys.User{Name: k.User, Role: k.Role, Fingerprint: k.Fingerprint}, nil
}

// keepAlive sends keepalive requests that expect a reply (DESIGN rule 9) and
// drops the connection after KeepAliveMax go unanswered.
func (s *Server) keepAlive(ctx context.Context, conn gossh.Conn, log *slog.Logger) {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-ctx.Done():
			return
		case err := <-reply:
			if err != nil {
				return
			}
			missed = 0
		case <-time.After(s.cfg.KeepAlive):
			missed++
			if missed >= s.cfg.KeepAliveMax {
				log.Info("client stopped answering keepalives; closing")
				_ = conn.Close()
				return
			}
		}
	}
}
