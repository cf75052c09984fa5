package sshd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"

	shlex "github.com/anmitsu/go-shlex"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
)

// Command is one row of the command table: the verb, its arguments, who may run
// it, and its help line. `help` is generated from the table.
type Command struct {
	Verb    string
	Usage   string // arguments, e.g. "APP [BUILD] [-f]"
	Help    string
	MinArgs int
	MaxArgs int  // -1: no limit
	Admin   bool // only admins may run it
	// AppLevel, when above NoAccess, makes the first argument an app name the
	// user needs at least this level on; otherwise they hear "no such app".
	AppLevel keys.Level
	JSON     bool // accepts --json
	Run      func(ctx context.Context, inv *Invocation) int
}

// Invocation is one run of a Command.
type Invocation struct {
	User   keys.User
	Args   []string // without the verb and --json
	JSON   bool
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Log    *slog.Logger
}

// Fail prints one line on stderr and returns exit status 1 (SPEC H4).
func (inv *Invocation) Fail(format string, args ...any) int {
	fmt.Fprintf(inv.Stderr, "sokoban: "+format+"\n", args...)
	return 1
}

// PrintJSON writes v as indented JSON.
func (inv *Invocation) PrintJSON(v any) int {
	enc := json.NewEncoder(inv.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

// Table prints rows as aligned columns, readable in a terminal and a CI log.
func (inv *Invocation) Table(rows [][]string) {
	tw := tabwriter.NewWriter(inv.Stdout, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func builtinCommands(s *Server) []Command {
	return []Command{
		{Verb: "help", Help: "show this help", MaxArgs: 0, Run: s.help},
		{Verb: "whoami", Help: "show who you are to this server", MaxArgs: 0, JSON: true, Run: whoami},
	}
}

func (s *Server) help(_ context.Context, inv *Invocation) int {
	s.writeHelp(inv.Stdout, inv.User)
	return 0
}

func (s *Server) writeHelp(w io.Writer, u keys.User) {
	fmt.Fprintf(w, "Sokoban %s: git push to deploy.\n\n", s.cfg.Version)
	fmt.Fprintf(w, "Deploy:   git push ssh://git@HOST/APP.git main\nClone:    git clone ssh://git@HOST/APP.git\n\n")
	fmt.Fprintf(w, "Commands (ssh git@HOST COMMAND):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range s.order {
		if c.Admin && u.Role != keys.RoleAdmin {
			continue
		}
		usage := strings.TrimSpace(c.Verb + " " + c.Usage)
		if c.JSON {
			usage += " [--json]"
		}
		help := c.Help
		if c.Admin {
			help += " (admin)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", usage, help)
	}
	_ = tw.Flush()
}

func whoami(_ context.Context, inv *Invocation) int {
	if inv.JSON {
		return inv.PrintJSON(map[string]string{"user": inv.User.Name, "role": string(inv.User.Role), "fingerprint": inv.User.Fingerprint})
	}
	inv.Table([][]string{{"user", inv.User.Name}, {"role", string(inv.User.Role)}, {"fingerprint", inv.User.Fingerprint}})
	return 0
}

// route dispatches a session to git or to the command table. Nothing reaches
// git unless the command is on the allow-list and the app name follows the rule.
func (s *Server) route(c *call) int {
	raw := c.sess.RawCommand()
	if strings.TrimSpace(raw) == "" {
		s.writeHelp(c.stderr, c.user)
		return 1
	}
	if isGitVerb(raw) {
		return s.serveGit(c, raw)
	}
	argv, err := shlex.Split(raw, true)
	if err != nil || len(argv) == 0 {
		fmt.Fprintf(c.stderr, "sokoban: cannot parse the command (%v); run `ssh git@HOST help`\n", err)
		return 1
	}
	cmd, ok := s.commands[argv[0]]
	if !ok {
		fmt.Fprintf(c.stderr, "sokoban: unknown command %q; run `ssh git@HOST help`\n", truncate(argv[0], 40))
		return 1
	}
	inv := &Invocation{User: c.user, Stdin: c.sess, Stdout: c.stdout, Stderr: c.stderr, Log: c.log}
	for _, a := range argv[1:] {
		if cmd.JSON && a == "--json" {
			inv.JSON = true
			continue
		}
		inv.Args = append(inv.Args, a)
	}
	if cmd.Admin && c.user.Role != keys.RoleAdmin {
		return inv.Fail("%s is for admins only", cmd.Verb)
	}
	if len(inv.Args) < cmd.MinArgs || (cmd.MaxArgs >= 0 && len(inv.Args) > cmd.MaxArgs) {
		return inv.Fail("usage: %s", strings.TrimSpace(cmd.Verb+" "+cmd.Usage))
	}
	if cmd.AppLevel > keys.NoAccess {
		app := inv.Args[0]
		if !keys.ValidApp(app) {
			return inv.Fail("no such app: %s", truncate(app, 40))
		}
		level, err := s.deps.Access.Level(c.ctx, c.user, app)
		if err != nil {
			c.log.Error("access check failed", "err", err)
			return inv.Fail("could not check access; try again in a moment")
		}
		if level < cmd.AppLevel {
			return inv.Fail("%s", keys.NoAccessMessage(s.deps.Access, app))
		}
	}
	return cmd.Run(c.ctx, inv)
}

var gitVerbs = []string{"git-receive-pack", "git-upload-pack"}

func isGitVerb(raw string) bool {
	return strings.HasPrefix(raw, "git-") || strings.HasPrefix(raw, "git ")
}

// ParseGitCommand accepts exactly the forms git and people send:
// `git-receive-pack 'app.git'`, `'/app.git'`, `app`, and the two-word
// `git receive-pack …` form. It returns the verb and the app.
func ParseGitCommand(raw string) (verb, app string, err error) {
	argv, err := shlex.Split(raw, true)
	if err != nil || len(argv) == 0 {
		return "", "", fmt.Errorf("%w: cannot parse %q", ErrBadCommand, truncate(raw, 60))
	}
	if argv[0] == "git" && len(argv) > 1 {
		argv = append([]string{"git-" + argv[1]}, argv[2:]...)
	}
	verb = argv[0]
	if !slices.Contains(gitVerbs, verb) {
		return "", "", fmt.Errorf("%w: %s is not supported here (only git push and git clone/fetch)", ErrBadCommand, truncate(verb, 40))
	}
	if len(argv) != 2 {
		return "", "", fmt.Errorf("%w: %s takes exactly one repository", ErrBadCommand, verb)
	}
	path := strings.TrimPrefix(argv[1], "/")
	path = strings.TrimSuffix(path, ".git")
	if !keys.ValidApp(path) {
		return "", "", fmt.Errorf("%w: %q is not an app name: use lowercase letters, digits and dashes, 3 to 30 long, starting with a letter (e.g. ssh://git@HOST/myapp.git)", ErrBadCommand, truncate(argv[1], 60))
	}
	return verb, path, nil
}

// serveGit runs a git verb for an app after the allow-list and access checks.
// Refusals before git starts are ERR pkt-lines (DESIGN rule 2).
func (s *Server) serveGit(c *call, raw string) int {
	verb, app, err := ParseGitCommand(raw)
	if err != nil {
		c.log.Info("git command refused", "err", err)
		_ = receiver.RefuseGit(c.stdout, strings.TrimPrefix(err.Error(), ErrBadCommand.Error()+": "))
		return 1
	}
	level, err := s.deps.Access.Level(c.ctx, c.user, app)
	if err != nil {
		c.log.Error("access check failed", "err", err)
		_ = receiver.RefuseGit(c.stdout, "could not check your access; try again in a moment")
		return 1
	}
	need := keys.ReadOnly
	if verb == "git-receive-pack" {
		need = keys.Collaborator
	}
	if level < need && verb == "git-receive-pack" {
		// A push to a new name may create the app; the receiver decides again
		// under the lease.
		if ok, err := s.deps.Access.MayCreate(c.ctx, c.user, app); err != nil {
			c.log.Error("access check failed", "err", err)
			_ = receiver.RefuseGit(c.stdout, "could not check your access; try again in a moment")
			return 1
		} else if ok {
			level = need
		}
	}
	if level < need {
		_ = receiver.RefuseGit(c.stdout, keys.NoAccessMessage(s.deps.Access, app))
		return 1
	}
	req := receiver.Request{
		App: app, User: c.user, ConnID: c.connID, GitProtocol: gitProtocol(c.sess.Environ()),
		Stdin: c.sess, Stdout: c.stdout, Stderr: c.stderr,
	}
	if verb == "git-receive-pack" {
		return s.deps.Git.ReceivePack(c.ctx, req)
	}
	return s.deps.Git.UploadPack(c.ctx, req)
}

// gitProtocol is the only client environment variable Sokoban honours.
func gitProtocol(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok {
			return v
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
