package receiver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The pre-receive hook is a thin client (`sokoban hook pre-receive`): it sends
// its ref lines and git's quarantine environment to the serving process over a
// unix socket, with a one-time token, then copies the output frames it gets back
// to its stdout (git relays them as "remote:" lines) and exits with the verdict.
//
// Wire format. Hook → server: one JSON line (hookRequest). Server → hook: frames
// of [kind byte][uint32 big-endian length][payload]: frameOutput carries output
// bytes, frameVerdict ends the stream with "0" (accept) or "1" (reject).

// Environment variables that carry the callback address into the hook.
const (
	EnvHookSocket = "SOKOBAN_HOOK_SOCKET"
	EnvHookToken  = "SOKOBAN_HOOK_TOKEN"
)

const (
	frameOutput  byte = 'o'
	frameVerdict byte = 'x'

	maxFrame = 1 << 20

	// MaxRefUpdates bounds the ref updates of one push. Every one is read
	// and checked; a push with more is refused whole, never partly checked.
	MaxRefUpdates = 10_000
	// maxRefBytes bounds the hook's ref lines together; maxHookRequest
	// leaves room for JSON escaping (a byte of a ref name that is not UTF-8
	// becomes six) and the environment.
	maxRefBytes    = 4 << 20
	maxHookRequest = 6*maxRefBytes + 1<<20
)

// hookRequest is what the hook sends.
type hookRequest struct {
	Token string            `json:"token"`
	Refs  string            `json:"refs"`
	Env   map[string]string `json:"env"`
	// TooMany is set, and Refs left empty, when git sent more than
	// MaxRefUpdates lines or maxRefBytes bytes of them.
	TooMany bool `json:"too_many,omitempty"`
}

// forwardedEnv lists the hook's git variables the server needs: where the
// quarantined objects are, whether the push is shallow, and push options.
func forwardedEnv(name string) bool {
	switch name {
	case "GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
		"GIT_SHALLOW_FILE", "GIT_PUSH_OPTION_COUNT":
		return true
	}
	return strings.HasPrefix(name, "GIT_PUSH_OPTION_")
}

// preReceiveFunc runs a push's pre-receive stage, writing output to out, and
// says whether git may update the refs.
type preReceiveFunc func(req hookRequest, out io.Writer) bool

// hookServer accepts hook callbacks and hands each to the push that registered
// its token.
type hookServer struct {
	ln   net.Listener
	path string
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]preReceiveFunc
	wg      sync.WaitGroup
}

// maxSocketPath keeps under the kernel's sun_path limit (108 with the NUL).
const maxSocketPath = 100

func newHookServer(runDir string, log *slog.Logger) (*hookServer, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("receiver: hook socket dir: %w", err)
	}
	path := filepath.Join(runDir, "hook.sock")
	if len(path) > maxSocketPath {
		// Deep data directories can't hold a socket; a private temp dir can.
		dir, err := os.MkdirTemp("", "sokoban-hook-")
		if err != nil {
			return nil, fmt.Errorf("receiver: hook socket dir: %w", err)
		}
		path = filepath.Join(dir, "hook.sock")
	}
	_ = os.Remove(path) // a stale socket from a crashed run; cmd holds the data dir lock
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("receiver: hook socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("receiver: hook socket: %w", err)
	}
	h := &hookServer{ln: ln, path: path, log: log, pending: map[string]preReceiveFunc{}}
	h.wg.Add(1)
	go h.serve()
	return h, nil
}

func (h *hookServer) close() error {
	err := h.ln.Close()
	h.wg.Wait()
	if strings.HasPrefix(filepath.Base(filepath.Dir(h.path)), "sokoban-hook-") {
		_ = os.RemoveAll(filepath.Dir(h.path))
	}
	return err
}

// register returns a one-time token for fn; unregister must follow.
func (h *hookServer) register(fn preReceiveFunc) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	h.mu.Lock()
	h.pending[token] = fn
	h.mu.Unlock()
	return token
}

func (h *hookServer) unregister(token string) {
	h.mu.Lock()
	delete(h.pending, token)
	h.mu.Unlock()
}

func (h *hookServer) take(token string) (preReceiveFunc, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn, ok := h.pending[token]
	delete(h.pending, token) // one use only
	return fn, ok
}

func (h *hookServer) serve() {
	defer h.wg.Done()
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			h.log.Warn("hook socket accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.handle(conn)
		}()
	}
}

func (h *hookServer) handle(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic in hook callback", "panic", p)
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req hookRequest
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxHookRequest), 64<<10).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	fw := &frameWriter{w: conn}
	if err != nil {
		h.log.Warn("bad hook request", "err", err)
		_ = fw.verdict(false)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	fn, ok := h.take(req.Token)
	if !ok {
		h.log.Warn("hook called with an unknown token")
		_, _ = fw.Write([]byte(" !     This push is not known to the server (expired hook token).\n"))
		_ = fw.verdict(false)
		return
	}
	_ = fw.verdict(fn(req, fw))
}

// frameWriter sends output frames; it is safe for concurrent use.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (f *frameWriter) frame(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := f.w.Write(hdr[:]); err != nil {
		f.err = err
		return err
	}
	if _, err := f.w.Write(p); err != nil {
		f.err = err
		return err
	}
	return nil
}

func (f *frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += maxFrame {
		end := min(off+maxFrame, len(p))
		if err := f.frame(frameOutput, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (f *frameWriter) verdict(ok bool) error {
	v := "1"
	if ok {
		v = "0"
	}
	return f.frame(frameVerdict, []byte(v))
}

// RunHook is the body of `sokoban hook pre-receive`: it calls back to the
// serving process and relays its output and verdict. It returns the exit code.
func RunHook(ctx context.Context, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := map[string]string{}
	var socket, token string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == EnvHookSocket:
			socket = v
		case k == EnvHookToken:
			token = v
		case forwardedEnv(k):
			env[k] = v
		}
	}
	if socket == "" || token == "" {
		fmt.Fprintln(stderr, "sokoban hook: must be run by git receive-pack under `sokoban serve`")
		return 1
	}
	refs, tooMany, err := readRefLines(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "sokoban hook: read refs: %v\n", err)
		return 1
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "unix", socket)
	cancel()
	if err != nil {
		fmt.Fprintf(stdout, " !     Push rejected: the build server could not be reached (%v).\n", err)
		return 1
	}
	defer func() { _ = conn.Close() }()
	var req bytes.Buffer
	enc := json.NewEncoder(&req)
	enc.SetEscapeHTML(false) // <, > and & are legal in ref names; keep them one byte
	_ = enc.Encode(hookRequest{Token: token, Refs: string(refs), Env: env, TooMany: tooMany})
	if _, err := conn.Write(req.Bytes()); err != nil {
		fmt.Fprintf(stdout, " !     Push rejected: lost contact with the build server (%v).\n", err)
		return 1
	}
	r := bufio.NewReader(conn)
	buf := make([]byte, 32<<10)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			fmt.Fprintln(stdout, " !     Push rejected: lost contact with the build server.")
			return 1
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			fmt.Fprintln(stdout, " !     Push rejected: garbled reply from the build server.")
			return 1
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			fmt.Fprintln(stdout, " !     Push rejected: lost contact with the build server.")
			return 1
		}
		switch hdr[0] {
		case frameOutput:
			if _, err := stdout.Write(buf[:n]); err != nil {
				return 1
			}
		case frameVerdict:
			if string(buf[:n]) == "0" {
				return 0
			}
			return 1
		}
	}
}

// readRefLines reads every ref line git gives the hook. Past MaxRefUpdates
// lines or maxRefBytes bytes it stops keeping them and reports tooMany; it
// still reads to the end, so git is never cut off mid-write.
func readRefLines(r io.Reader) (refs []byte, tooMany bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf bytes.Buffer
	lines := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 && !tooMany {
			if chunk[len(chunk)-1] == '\n' || errors.Is(err, io.EOF) {
				lines++
			}
			if lines > MaxRefUpdates || buf.Len()+len(chunk) > maxRefBytes {
				tooMany = true
				buf.Reset()
			} else {
				buf.Write(chunk)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return buf.Bytes(), tooMany, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// A line longer than the buffer: its bytes count, it is not a
			// new line yet.
		case err != nil:
			return nil, false, err
		}
	}
}
