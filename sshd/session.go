package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
)

// call is one SSH session as it moves through the chain.
type call struct {
	sess   ssh.Session
	ctx    context.Context
	connID string
	log    *slog.Logger
	user   keys.User
	stdout io.Writer
	stderr io.Writer
}

type step func(c *call) int

// handle runs every session through one ordered chain:
//
//	recover → session context → authenticate → log → route
//
// and sends the exit status exactly once, after all output was written
// (DESIGN rule 3). gliderlabs/ssh calls Exit(0) after handle returns; Exit is
// idempotent there, so our status is the one the client sees.
func (s *Server) handle(sess ssh.Session) {
	s.wg.Add(1)
	defer s.wg.Done()
	if t, ok := sess.Context().Value(keyHandshake).(*time.Timer); ok {
		t.Stop()
	}
	chain := s.recoverPanics(s.sessionContext(s.authenticate(s.logSession(s.route))))
	code := chain(&call{sess: sess, stdout: sess, stderr: sess.Stderr()})
	_ = sess.Exit(code)
}

// recoverPanics turns a panic anywhere below into exit status 1 and a log line.
func (s *Server) recoverPanics(next step) step {
	return func(c *call) (code int) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in session", "conn", c.connID, "panic", v, "stack", string(debug.Stack()))
				fmt.Fprintln(c.stderr, "sokoban: internal error; the operator has the details")
				code = 1
			}
		}()
		return next(c)
	}
}

// sessionContext gives the session a context that ends when the client goes
// away or the server closes, and starts keepalives.
func (s *Server) sessionContext(next step) step {
	return func(c *call) int {
		ctx, cancel := context.WithCancel(s.baseCtx)
		defer cancel()
		go func() {
			select {
			case <-c.sess.Context().Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		c.ctx = ctx
		c.connID, _ = c.sess.Context().Value(keyConnID).(string)
		c.log = s.log.With("conn", c.connID)
		if conn, ok := c.sess.Context().Value(ssh.ContextKeyConn).(gossh.Conn); ok {
			go s.keepAlive(ctx, conn, c.log)
		}
		return next(c)
	}
}

// authenticate resolves the user from the key that actually signed.
func (s *Server) authenticate(next step) step {
	return func(c *call) int {
		u, err := s.identify(c.ctx, c.sess)
		if err != nil {
			c.log.Warn("session refused", "err", err, "remote", c.sess.RemoteAddr().String())
			s.metrics.authFailures.Inc()
			msg := "your key is not registered; ask an admin to run `sokoban keys add`"
			if r, ok := errors.AsType[*keys.RefusedError](err); ok {
				msg = r.UserMessage()
			}
			fmt.Fprintln(c.stderr, "sokoban: "+msg)
			return 1
		}
		c.user = u
		c.log = c.log.With("user", u.Name)
		c.log.Debug("authenticated", "key", u.Fingerprint)
		return next(c)
	}
}

// logSession logs the command, its result and duration.
func (s *Server) logSession(next step) step {
	return func(c *call) int {
		start := time.Now()
		verb := "(none)"
		if f := strings.Fields(c.sess.RawCommand()); len(f) > 0 {
			verb = f[0]
		}
		c.log.Info("session start", "remote", c.sess.RemoteAddr().String(), "command", verb)
		c.log.Debug("session command", "raw", c.sess.RawCommand(), "env", c.sess.Environ())
		code := next(c)
		c.log.Info("session end", "command", verb, "exit", code, "duration", time.Since(start).Round(time.Millisecond))
		return code
	}
}
