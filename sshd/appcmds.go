package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/internal/termsafe"
	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
	"github.com/sokoban-deploy/sokoban/release"
)

// What the operating commands need. Each is small and declared here; cmd wires
// the real implementations. A nil Releases or Settings means those live
// elsewhere (Heroku mode), and the commands say so.

// BuildStore reads durable build records (receiver.Receiver).
type BuildStore interface {
	Builds(ctx context.Context, app string, limit int) ([]receiver.Record, error)
	Build(ctx context.Context, app, id string) (receiver.Record, error)
	BuildLog(ctx context.Context, app, id string) (io.ReadCloser, error)
}

// ReleaseLister lists an app's releases (release.Local).
type ReleaseLister interface {
	List(ctx context.Context, app string) ([]release.Release, error)
}

// SettingsStore reads and writes an app's config vars and buildpacks.
// Each change is one conditional write in release (issue 11 item 3).
type SettingsStore interface {
	Get(ctx context.Context, app string) (release.Settings, error)
	SetConfig(ctx context.Context, app string, vars map[string]string) error
	UnsetConfig(ctx context.Context, app string, keys []string) ([]string, error)
	SetBuildpacks(ctx context.Context, app string, urls []string) error
	ClearBuildpacks(ctx context.Context, app string) error
}

// AppStore holds apps' access records (keys.Apps).
type AppStore interface {
	Get(ctx context.Context, app string) (*keys.App, error)
	List(ctx context.Context) ([]*keys.App, error)
	AddCollaborator(ctx context.Context, app, user string, users keys.UserSet) (bool, error)
	RemoveCollaborator(ctx context.Context, app, user string) error
}

// KeyStore manages registered keys (keys.Store).
type KeyStore interface {
	List(ctx context.Context) ([]keys.Key, error)
	Add(ctx context.Context, user string, role keys.Role, pk gossh.PublicKey, comment string) (keys.Key, error)
	Remove(ctx context.Context, fingerprint string) (keys.Key, error)
	HasUser(ctx context.Context, name string) (bool, error)
}

// Gate turns pushes off and on (receiver.Receiver).
type Gate interface {
	Disable(ctx context.Context, app, reason, by string) error
	Enable(ctx context.Context, app string) error
	DisabledState(ctx context.Context, app string) (*receiver.Disabled, error)
}

// KeyLinker registers a key after proving it belongs to a Heroku account
// (Heroku mode's heroku.Linker).
type KeyLinker interface {
	LinkKey(ctx context.Context, token string, authorizedKey []byte) (keys.Key, error)
}

// CachePurger empties an app's build cache.
type CachePurger interface {
	PurgeCache(ctx context.Context, app string) error
}

// AppDeps are the operating commands' collaborators.
type AppDeps struct {
	Access   Access
	Registry cluster.Registry
	Builds   BuildStore
	Releases ReleaseLister
	Settings SettingsStore
	Apps     AppStore
	Keys     KeyStore
	Gate     Gate
	Cache    CachePurger
	Linker   KeyLinker // nil outside Heroku mode
	// CancelWait bounds how long `cancel` waits for the build to stop; default 30s.
	CancelWait time.Duration
	// Poll is how often `logs -f` looks for a build to start; default 500ms.
	Poll time.Duration
}

// AppCommands is the command set of DESIGN.md beyond help and whoami, in the
// order `help` shows them.
func AppCommands(d AppDeps) []Command {
	if d.CancelWait <= 0 {
		d.CancelWait = 30 * time.Second
	}
	if d.Poll <= 0 {
		d.Poll = 500 * time.Millisecond
	}
	a := &appCmds{d}
	return []Command{
		{Verb: "apps", Help: "list the apps you can see", JSON: true, Run: a.apps},
		{Verb: "status", Usage: "[APP]", Help: "running and recent builds", MaxArgs: 1, JSON: true, Run: a.status},
		{Verb: "cancel", Usage: "APP", Help: "stop APP's running build", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, Run: a.cancel},
		{Verb: "logs", Usage: "APP [BUILD] [-f]", Help: "a build's output; -f follows the running (or next) build", MinArgs: 1, MaxArgs: 3, AppLevel: keys.Collaborator, Run: a.logs},
		{Verb: "releases", Usage: "APP", Help: "APP's releases, newest first", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, JSON: true, Run: a.releases},
		{Verb: "config", Usage: "APP", Help: "APP's config vars", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, JSON: true, Run: a.config},
		{Verb: "config:set", Usage: "APP KEY=VALUE...", Help: "set config vars for the next build", MinArgs: 2, MaxArgs: -1, AppLevel: keys.Collaborator, Run: a.configSet},
		{Verb: "config:unset", Usage: "APP KEY...", Help: "remove config vars", MinArgs: 2, MaxArgs: -1, AppLevel: keys.Collaborator, Run: a.configUnset},
		{Verb: "buildpacks", Usage: "APP", Help: "APP's buildpacks", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, JSON: true, Run: a.buildpacks},
		{Verb: "buildpacks:set", Usage: "APP URL...", Help: "use these buildpacks, in order", MinArgs: 2, MaxArgs: -1, AppLevel: keys.Collaborator, Run: a.buildpacksSet},
		{Verb: "buildpacks:clear", Usage: "APP", Help: "go back to auto-detection", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, Run: a.buildpacksClear},
		{Verb: "cache:purge", Usage: "APP", Help: "start APP's next build with an empty cache", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, Run: a.cachePurge},
		{Verb: "access", Usage: "APP", Help: "who may push APP", MinArgs: 1, MaxArgs: 1, AppLevel: keys.Collaborator, JSON: true, Run: a.access},
		{Verb: "access:add", Usage: "APP USER", Help: "let USER push APP", MinArgs: 2, MaxArgs: 2, AppLevel: keys.Owner, Run: a.accessAdd},
		{Verb: "access:remove", Usage: "APP USER", Help: "stop USER pushing APP", MinArgs: 2, MaxArgs: 2, AppLevel: keys.Owner, Run: a.accessRemove},
		{Verb: "keys", Help: "your keys (admins: every key)", JSON: true, Run: a.keys},
		{Verb: "keys:add", Usage: "USER [--admin] | --heroku", Help: "register the public key on stdin (--heroku: a Heroku API token line, then the key)", MinArgs: 1, MaxArgs: 2, Admin: true, Run: a.keysAdd},
		{Verb: "keys:remove", Usage: "FINGERPRINT", Help: "remove a key", MinArgs: 1, MaxArgs: 1, Admin: true, Run: a.keysRemove},
		{Verb: "disable", Usage: "APP|--all [REASON...]", Help: "refuse pushes to APP, or with --all to every app", MinArgs: 1, MaxArgs: -1, Admin: true, Run: a.disable},
		{Verb: "enable", Usage: "APP|--all", Help: "accept pushes to APP (or, with --all, server-wide) again", MinArgs: 1, MaxArgs: 1, Admin: true, Run: a.enable},
	}
}

type appCmds struct{ d AppDeps }

// visible is every app the user may see, by name.
func (a *appCmds) visible(ctx context.Context, u keys.User) ([]*keys.App, map[string]keys.Level, error) {
	all, err := a.d.Apps.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []*keys.App
	levels := map[string]keys.Level{}
	for _, app := range all {
		if l := keys.Decide(u, app, false); l >= keys.Collaborator {
			out = append(out, app)
			levels[app.Name] = l
		}
	}
	return out, levels, nil
}

func (a *appCmds) apps(ctx context.Context, inv *Invocation) int {
	apps, levels, err := a.visible(ctx, inv.User)
	if err != nil {
		return a.internal(inv, "list apps", err)
	}
	type view struct {
		Name   string    `json:"name"`
		Owner  string    `json:"owner"`
		Access string    `json:"access"`
		Since  time.Time `json:"created_at"`
	}
	views := make([]view, 0, len(apps))
	for _, app := range apps {
		views = append(views, view{app.Name, app.Owner, levels[app.Name].String(), app.CreatedAt})
	}
	if inv.JSON {
		return inv.PrintJSON(views)
	}
	if len(views) == 0 {
		fmt.Fprintln(inv.Stdout, "No apps yet. Push one: git push ssh://git@HOST/APP.git main")
		return 0
	}
	rows := [][]string{{"APP", "OWNER", "ACCESS", "CREATED"}}
	for _, v := range views {
		rows = append(rows, []string{v.Name, v.Owner, v.Access, v.Since.Format(time.DateOnly)})
	}
	inv.Table(rows)
	return 0
}

// status shows running builds (from the registry: every node) and recent ones
// (from the records), for one app or every app the user can see (SPEC H1).
func (a *appCmds) status(ctx context.Context, inv *Invocation) int {
	var names []string
	if len(inv.Args) == 1 {
		app := inv.Args[0]
		if level, err := a.d.Access.Level(ctx, inv.User, app); err != nil {
			return a.internal(inv, "check access", err)
		} else if level < keys.Collaborator {
			return inv.Fail("%s", keys.NoAccessMessage(a.d.Access, app))
		}
		names = []string{app}
	} else {
		apps, _, err := a.visible(ctx, inv.User)
		if err != nil {
			return a.internal(inv, "list apps", err)
		}
		for _, app := range apps {
			names = append(names, app.Name)
		}
	}
	running, err := a.d.Registry.Builds(ctx)
	if err != nil {
		return a.internal(inv, "list running builds", err)
	}
	running = slices.DeleteFunc(running, func(b cluster.Build) bool { return !slices.Contains(names, b.App) })
	var recent []receiver.Record
	for _, app := range names {
		recs, err := a.d.Builds.Builds(ctx, app, 10)
		if err != nil {
			return a.internal(inv, "list builds", err)
		}
		for _, r := range recs {
			if r.Status != receiver.StatusRunning {
				recent = append(recent, r)
			}
		}
	}
	sort.Slice(recent, func(i, j int) bool { return recent[i].ID > recent[j].ID })
	if len(recent) > 10 {
		recent = recent[:10]
	}
	if inv.JSON {
		if running == nil {
			running = []cluster.Build{}
		}
		if recent == nil {
			recent = []receiver.Record{}
		}
		return inv.PrintJSON(map[string]any{"running": running, "recent": recent})
	}
	now := time.Now()
	if len(running) == 0 {
		fmt.Fprintln(inv.Stdout, "No builds running.")
	} else {
		fmt.Fprintln(inv.Stdout, "Running:")
		rows := [][]string{{"  APP", "BUILD", "USER", "NODE", "STAGE", "ELAPSED"}}
		for _, b := range running {
			rows = append(rows, []string{"  " + b.App, b.ID, b.User, b.Node, b.Stage, now.Sub(b.Started).Round(time.Second).String()})
		}
		inv.Table(rows)
	}
	if len(recent) > 0 {
		fmt.Fprintln(inv.Stdout, "\nRecent:")
		rows := [][]string{{"  APP", "BUILD", "USER", "RESULT", "DURATION", "RELEASE"}}
		for _, r := range recent {
			rel := "-"
			if r.Release > 0 {
				rel = "v" + strconv.Itoa(r.Release)
			}
			rows = append(rows, []string{"  " + r.App, r.ID, r.User, r.Status, r.Finished.Sub(r.Started).Round(100 * time.Millisecond).String(), rel})
		}
		inv.Table(rows)
	}
	return 0
}

// cancel stops the app's running build wherever it runs (SPEC H2) and waits
// until it has stopped.
func (a *appCmds) cancel(ctx context.Context, inv *Invocation) int {
	app := inv.Args[0]
	b, err := a.d.Registry.Cancel(ctx, app, inv.User.Name)
	if errors.Is(err, cluster.ErrNotRunning) {
		return inv.Fail("no build of %s is running", app)
	}
	if err != nil {
		return a.internal(inv, "cancel", err)
	}
	fmt.Fprintf(inv.Stdout, "Cancelling build %s of %s (by %s on %s, %s since %s)...\n",
		b.ID, app, b.User, b.Node, b.Stage, time.Since(b.Started).Round(time.Second))
	deadline := time.Now().Add(a.d.CancelWait)
	for time.Now().Before(deadline) {
		builds, err := a.d.Registry.Builds(ctx)
		if err == nil && !slices.ContainsFunc(builds, func(x cluster.Build) bool { return x.ID == b.ID }) {
			fmt.Fprintf(inv.Stdout, "Build %s cancelled.\n", b.ID)
			return 0
		}
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(a.d.Poll / 5):
		}
	}
	fmt.Fprintf(inv.Stdout, "Cancel requested; build %s is still stopping.\n", b.ID)
	return 0
}

// logs prints a build's output (SPEC H3). A running build is followed to its
// end, from its first line; with -f and no build running, it waits for the
// app's next build.
func (a *appCmds) logs(ctx context.Context, inv *Invocation) int {
	app, follow, id := inv.Args[0], false, ""
	for _, arg := range inv.Args[1:] {
		switch {
		case arg == "-f" || arg == "--follow":
			follow = true
		case id == "" && receiver.ValidBuildID(arg):
			id = arg
		default:
			return inv.Fail("usage: logs APP [BUILD] [-f] (%q is not a build id)", truncate(arg, 40))
		}
	}
	for {
		running, err := a.d.Registry.Builds(ctx)
		if err != nil {
			return a.internal(inv, "list running builds", err)
		}
		for _, b := range running {
			if b.App == app && (id == "" || b.ID == id) {
				return a.follow(ctx, inv, b)
			}
		}
		if id != "" || !follow {
			break
		}
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(a.d.Poll):
		}
	}
	if id == "" {
		recs, err := a.d.Builds.Builds(ctx, app, 1)
		if err != nil {
			return a.internal(inv, "list builds", err)
		}
		if len(recs) == 0 {
			return inv.Fail("%s has no builds yet", app)
		}
		id = recs[0].ID
	}
	rec, err := a.d.Builds.Build(ctx, app, id)
	if errors.Is(err, receiver.ErrNoBuild) {
		return inv.Fail("%s has no build %s", app, id)
	}
	if err != nil {
		return a.internal(inv, "read build", err)
	}
	rc, err := a.d.Builds.BuildLog(ctx, app, id)
	if err != nil && !errors.Is(err, receiver.ErrNoBuild) {
		return a.internal(inv, "read build log", err)
	}
	if rc != nil {
		// The stored log has the build's raw bytes; the reader's terminal
		// gets them filtered (issue 10 item 4), like the pusher did.
		tw := termsafe.NewWriter(inv.Stdout)
		_, _ = io.Copy(tw, rc)
		_ = tw.Flush()
		_ = rc.Close()
	}
	fmt.Fprintf(inv.Stdout, "-----> Build %s %s\n", rec.ID, rec.Status)
	return 0
}

func (a *appCmds) follow(ctx context.Context, inv *Invocation, b cluster.Build) int {
	f, err := a.d.Registry.Follow(ctx, b.ID)
	if errors.Is(err, cluster.ErrNotRunning) {
		// It finished between listing and following: its record is stowed.
		inv.Args = []string{b.App, b.ID}
		return a.logs(ctx, inv)
	}
	if err != nil {
		return a.internal(inv, "follow build", err)
	}
	defer func() { _ = f.Close() }()
	fmt.Fprintf(inv.Stdout, "-----> Following build %s of %s by %s on %s\n", b.ID, b.App, b.User, b.Node)
	// The live fan-out carries the build's raw bytes (the log's copy); the
	// follower's terminal gets them filtered (issue 10 item 4).
	tw := termsafe.NewWriter(inv.Stdout)
	_, err = io.Copy(tw, f)
	_ = tw.Flush()
	if err != nil {
		if ctx.Err() != nil {
			return 1
		}
		fmt.Fprintf(inv.Stdout, "-----> Lost the build's output: %v\n", err)
		return 1
	}
	fmt.Fprintf(inv.Stdout, "-----> Build %s %s\n", b.ID, f.Result())
	return 0
}

// releaseView is the `releases --json` contract (DESIGN.md).
type releaseView struct {
	Version      int               `json:"version"`
	Slug         string            `json:"slug"`
	Commit       string            `json:"commit"`
	Checksum     string            `json:"checksum"`
	ProcessTypes map[string]string `json:"process_types"`
	User         string            `json:"user"`
	Description  string            `json:"description"`
	CreatedAt    time.Time         `json:"created_at"`
	Current      bool              `json:"current"`
}

func (a *appCmds) releases(ctx context.Context, inv *Invocation) int {
	if a.d.Releases == nil {
		return inv.Fail("releases are kept by the release backend; use `heroku releases -a %s`", inv.Args[0])
	}
	list, err := a.d.Releases.List(ctx, inv.Args[0])
	if err != nil {
		return a.internal(inv, "list releases", err)
	}
	if inv.JSON {
		views := make([]releaseView, 0, len(list))
		for _, r := range list {
			views = append(views, releaseView{r.Version, r.Slug, r.Commit, r.Checksum, r.ProcessTypes, r.User, r.Description, r.CreatedAt, r.Current})
		}
		return inv.PrintJSON(views)
	}
	if len(list) == 0 {
		fmt.Fprintf(inv.Stdout, "%s has no releases yet.\n", inv.Args[0])
		return 0
	}
	rows := [][]string{{"", "VERSION", "CREATED", "USER", "COMMIT", "DESCRIPTION"}}
	for _, r := range list {
		mark := ""
		if r.Current {
			mark = "*"
		}
		rows = append(rows, []string{mark, "v" + strconv.Itoa(r.Version), r.CreatedAt.Format("2006-01-02 15:04:05"), r.User, shortSHA(r.Commit), r.Description})
	}
	inv.Table(rows)
	return 0
}

func (a *appCmds) settings(ctx context.Context, inv *Invocation) (release.Settings, bool) {
	if a.d.Settings == nil {
		inv.Fail("config vars and buildpacks are kept by the release backend; use `heroku config -a %s` and `heroku buildpacks -a %s`", inv.Args[0], inv.Args[0])
		return release.Settings{}, false
	}
	s, err := a.d.Settings.Get(ctx, inv.Args[0])
	if err != nil {
		a.internal(inv, "read settings", err)
		return release.Settings{}, false
	}
	return s, true
}

func (a *appCmds) config(ctx context.Context, inv *Invocation) int {
	s, ok := a.settings(ctx, inv)
	if !ok {
		return 1
	}
	if inv.JSON {
		return inv.PrintJSON(s.Config)
	}
	if len(s.Config) == 0 {
		fmt.Fprintf(inv.Stdout, "%s has no config vars.\n", inv.Args[0])
		return 0
	}
	names := make([]string, 0, len(s.Config))
	for k := range s.Config {
		names = append(names, k)
	}
	sort.Strings(names)
	rows := make([][]string, 0, len(names))
	for _, k := range names {
		v := s.Config[k]
		if strings.ContainsAny(v, "\n\r\t") || strconv.Quote(v) != `"`+v+`"` {
			v = strconv.Quote(v)
		}
		rows = append(rows, []string{k + ":", v})
	}
	inv.Table(rows)
	return 0
}

func (a *appCmds) configSet(ctx context.Context, inv *Invocation) int {
	vars := map[string]string{}
	var names []string
	for _, kv := range inv.Args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !release.ValidConfigKey(k) {
			return inv.Fail("config:set takes KEY=VALUE with KEY made of letters, digits and _ (got %q)", truncate(kv, 40))
		}
		if _, dup := vars[k]; !dup {
			names = append(names, k)
		}
		vars[k] = v
	}
	if a.d.Settings == nil {
		_, ok := a.settings(ctx, inv)
		return boolExit(ok)
	}
	err := a.d.Settings.SetConfig(ctx, inv.Args[0], vars)
	if errors.Is(err, release.ErrConfigTooLarge) {
		return inv.Fail("config vars of %s would take more than %d KB (keys and values together); unset some first",
			inv.Args[0], release.MaxConfigSize>>10)
	}
	if err != nil {
		return a.internal(inv, "save settings", err)
	}
	fmt.Fprintf(inv.Stdout, "Set %s on %s. They reach the next build.\n", strings.Join(names, ", "), inv.Args[0])
	return 0
}

func (a *appCmds) configUnset(ctx context.Context, inv *Invocation) int {
	for _, k := range inv.Args[1:] {
		if !release.ValidConfigKey(k) {
			return inv.Fail("config:unset takes KEY names (got %q)", truncate(k, 40))
		}
	}
	if a.d.Settings == nil {
		_, ok := a.settings(ctx, inv)
		return boolExit(ok)
	}
	gone, err := a.d.Settings.UnsetConfig(ctx, inv.Args[0], inv.Args[1:])
	if err != nil {
		return a.internal(inv, "save settings", err)
	}
	var missing []string
	for _, k := range inv.Args[1:] {
		if !slices.Contains(gone, k) && !slices.Contains(missing, k) {
			missing = append(missing, k)
		}
	}
	if len(gone) > 0 {
		fmt.Fprintf(inv.Stdout, "Unset %s on %s.\n", strings.Join(gone, ", "), inv.Args[0])
	}
	if len(missing) > 0 {
		fmt.Fprintf(inv.Stdout, "Not set, nothing to do: %s.\n", strings.Join(missing, ", "))
	}
	return 0
}

func (a *appCmds) buildpacks(ctx context.Context, inv *Invocation) int {
	s, ok := a.settings(ctx, inv)
	if !ok {
		return 1
	}
	if inv.JSON {
		if s.Buildpacks == nil {
			s.Buildpacks = []string{}
		}
		return inv.PrintJSON(s.Buildpacks)
	}
	if len(s.Buildpacks) == 0 {
		fmt.Fprintf(inv.Stdout, "%s has no buildpacks set: builds use the repository's .buildpacks or auto-detect from the server's defaults.\n", inv.Args[0])
		return 0
	}
	for i, u := range s.Buildpacks {
		fmt.Fprintf(inv.Stdout, "%d. %s\n", i+1, u)
	}
	return 0
}

var shortNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$`)

// userBuildpackURL refuses what a user may not choose: paths on the server.
func userBuildpackURL(u string) error {
	// Listings print the URL back to whoever runs `buildpacks APP`: an
	// escape sequence in it would reach their terminal.
	for _, r := range u {
		if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("a buildpack URL may hold only printable characters, no spaces or control characters")
		}
	}
	base, _, _ := strings.Cut(u, "#")
	switch {
	case strings.HasPrefix(base, "https://"), strings.HasPrefix(base, "http://"),
		strings.HasPrefix(base, "git://"), strings.HasPrefix(base, "ssh://"):
		return nil
	case strings.HasPrefix(base, "git@") && strings.Contains(base, ":"):
		return nil
	case shortNameRE.MatchString(base):
		return nil // a short name like heroku/python, resolved by the server's map
	}
	return fmt.Errorf("%q is not a buildpack URL: use https://, git://, ssh:// or a short name like heroku/python", truncate(u, 60))
}

func (a *appCmds) buildpacksSet(ctx context.Context, inv *Invocation) int {
	for _, u := range inv.Args[1:] {
		if err := userBuildpackURL(u); err != nil {
			return inv.Fail("%v", err)
		}
	}
	if a.d.Settings == nil {
		_, ok := a.settings(ctx, inv)
		return boolExit(ok)
	}
	if err := a.d.Settings.SetBuildpacks(ctx, inv.Args[0], inv.Args[1:]); err != nil {
		return a.internal(inv, "save settings", err)
	}
	fmt.Fprintf(inv.Stdout, "Buildpacks for %s, used in this order from the next build:\n", inv.Args[0])
	for i, u := range inv.Args[1:] {
		fmt.Fprintf(inv.Stdout, "%d. %s\n", i+1, u)
	}
	return 0
}

func (a *appCmds) buildpacksClear(ctx context.Context, inv *Invocation) int {
	if a.d.Settings == nil {
		_, ok := a.settings(ctx, inv)
		return boolExit(ok)
	}
	if err := a.d.Settings.ClearBuildpacks(ctx, inv.Args[0]); err != nil {
		return a.internal(inv, "save settings", err)
	}
	fmt.Fprintf(inv.Stdout, "Cleared the buildpacks of %s; builds auto-detect again.\n", inv.Args[0])
	return 0
}

func (a *appCmds) cachePurge(ctx context.Context, inv *Invocation) int {
	if a.d.Cache == nil {
		return inv.Fail("this server keeps no build cache to purge")
	}
	if err := a.d.Cache.PurgeCache(ctx, inv.Args[0]); err != nil {
		return a.internal(inv, "purge cache", err)
	}
	fmt.Fprintf(inv.Stdout, "Purged the build cache of %s; the next build starts empty.\n", inv.Args[0])
	return 0
}

func (a *appCmds) appRecord(ctx context.Context, inv *Invocation) (*keys.App, bool) {
	rec, err := a.d.Apps.Get(ctx, inv.Args[0])
	if errors.Is(err, keys.ErrNoApp) {
		inv.Fail("%s", keys.NoAccessMessage(a.d.Access, inv.Args[0]))
		return nil, false
	}
	if err != nil {
		a.internal(inv, "read access list", err)
		return nil, false
	}
	return rec, true
}

func (a *appCmds) access(ctx context.Context, inv *Invocation) int {
	rec, ok := a.appRecord(ctx, inv)
	if !ok {
		return 1
	}
	if inv.JSON {
		collab := rec.Collaborators
		if collab == nil {
			collab = []string{}
		}
		return inv.PrintJSON(map[string]any{"app": rec.Name, "owner": rec.Owner, "collaborators": collab})
	}
	rows := [][]string{{"USER", "ACCESS"}, {rec.Owner, "owner"}}
	for _, c := range rec.Collaborators {
		rows = append(rows, []string{c, "collaborator"})
	}
	inv.Table(rows)
	return 0
}

func (a *appCmds) accessAdd(ctx context.Context, inv *Invocation) int {
	user := inv.Args[1]
	if !keys.ValidUser(user) {
		return inv.Fail("%q is not a user name", truncate(user, 40))
	}
	app := inv.Args[0]
	added, err := a.d.Apps.AddCollaborator(ctx, app, user, a.d.Keys)
	switch {
	case errors.Is(err, keys.ErrNoApp):
		return inv.Fail("%s", keys.NoAccessMessage(a.d.Access, app))
	case errors.Is(err, keys.ErrNotRegistered):
		return inv.Fail("%s has no key registered here; add their key first (an admin runs keys:add %s)", user, user)
	case err != nil:
		return a.internal(inv, "save access list", err)
	case !added:
		fmt.Fprintf(inv.Stdout, "%s already has access to %s.\n", user, app)
		return 0
	}
	fmt.Fprintf(inv.Stdout, "%s may now push %s, read its logs, cancel its builds and change its config.\n", user, app)
	return 0
}

func (a *appCmds) accessRemove(ctx context.Context, inv *Invocation) int {
	user := inv.Args[1]
	app := inv.Args[0]
	err := a.d.Apps.RemoveCollaborator(ctx, app, user)
	switch {
	case errors.Is(err, keys.ErrNoApp):
		return inv.Fail("%s", keys.NoAccessMessage(a.d.Access, app))
	case errors.Is(err, keys.ErrOwner):
		return inv.Fail("%s owns %s; an owner cannot be removed", user, app)
	case errors.Is(err, keys.ErrNotCollaborator):
		return inv.Fail("%s is not a collaborator on %s", truncate(user, 40), app)
	case err != nil:
		return a.internal(inv, "save access list", err)
	}
	fmt.Fprintf(inv.Stdout, "Removed %s from %s.\n", user, app)
	return 0
}

type keyView struct {
	User        string `json:"user"`
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	Role        string `json:"role"`
	Comment     string `json:"comment,omitempty"`
}

func (a *appCmds) keys(ctx context.Context, inv *Invocation) int {
	list, err := a.d.Keys.List(ctx)
	if err != nil {
		return a.internal(inv, "list keys", err)
	}
	views := []keyView{}
	for _, k := range list {
		if inv.User.Role == keys.RoleAdmin || k.User == inv.User.Name {
			views = append(views, keyView{k.User, k.Type(), k.Fingerprint, string(k.Role), k.Comment})
		}
	}
	if inv.JSON {
		return inv.PrintJSON(views)
	}
	rows := [][]string{{"USER", "TYPE", "FINGERPRINT", "ROLE"}}
	for _, v := range views {
		rows = append(rows, []string{v.User, v.Type, v.Fingerprint, v.Role})
	}
	inv.Table(rows)
	return 0
}

func (a *appCmds) keysAdd(ctx context.Context, inv *Invocation) int {
	if inv.Args[0] == "--heroku" {
		return a.keysLink(ctx, inv)
	}
	role := keys.RoleUser
	user := inv.Args[0]
	if len(inv.Args) == 2 {
		if inv.Args[1] != "--admin" {
			return inv.Fail("usage: keys:add USER [--admin] < key.pub")
		}
		role = keys.RoleAdmin
	}
	data, err := io.ReadAll(io.LimitReader(inv.Stdin, 64<<10))
	if err != nil {
		return inv.Fail("read the key from stdin: %v", err)
	}
	pk, comment, err := keys.ParsePublicKey(data)
	if err != nil {
		return inv.Fail("expected one public key on stdin, as in ~/.ssh/id_ed25519.pub (%v)", err)
	}
	k, err := a.d.Keys.Add(ctx, user, role, pk, comment)
	if errors.Is(err, keys.ErrDuplicateKey) || errors.Is(err, keys.ErrBadUser) {
		return inv.Fail("%s", strings.TrimPrefix(err.Error(), "keys: "))
	}
	if err != nil {
		return a.internal(inv, "add key", err)
	}
	fmt.Fprintf(inv.Stdout, "Added %s key %s for %s (%s).\n", k.Type(), k.Fingerprint, k.User, k.Role)
	return 0
}

func (a *appCmds) keysRemove(ctx context.Context, inv *Invocation) int {
	if inv.Args[0] == inv.User.Fingerprint || "SHA256:"+inv.Args[0] == inv.User.Fingerprint {
		return inv.Fail("that is the key you are using; remove it from another admin's session or with `sokoban keys remove`")
	}
	k, err := a.d.Keys.Remove(ctx, inv.Args[0])
	if errors.Is(err, keys.ErrNoSuchKey) {
		return inv.Fail("no key has the fingerprint %s", truncate(inv.Args[0], 60))
	}
	if err != nil {
		return a.internal(inv, "remove key", err)
	}
	fmt.Fprintf(inv.Stdout, "Removed %s key %s of %s.\n", k.Type(), k.Fingerprint, k.User)
	return 0
}

// disable takes APP or --all, then a free-form reason (SPEC F4). The scope
// is explicit: a name that is not an app is refused, never read as a reason
// that turns off every app.
func (a *appCmds) disable(ctx context.Context, inv *Invocation) int {
	app, reason := inv.Args[0], inv.Args[1:]
	if app == "--all" {
		app = ""
	} else if ok, err := a.d.Access.Exists(ctx, inv.User, app); err != nil {
		return a.internal(inv, "check the app", err)
	} else if !ok {
		return inv.Fail("no such app: %s (see `ssh git@HOST apps`; `disable --all` turns off pushes to every app)", truncate(app, 40))
	}
	why := strings.Join(reason, " ")
	if err := a.d.Gate.Disable(ctx, app, why, inv.User.Name); err != nil {
		return a.internal(inv, "disable", err)
	}
	scope := "every app"
	if app != "" {
		scope = app
	}
	fmt.Fprintf(inv.Stdout, "Pushes to %s are now refused", scope)
	if why != "" {
		fmt.Fprintf(inv.Stdout, " (%s)", why)
	}
	undo := "enable " + app
	if app == "" {
		undo = "enable --all"
	}
	fmt.Fprintf(inv.Stdout, ". Clones and fetches still work. Undo with `%s`.\n", undo)
	return 0
}

func (a *appCmds) enable(ctx context.Context, inv *Invocation) int {
	app := inv.Args[0]
	if app == "--all" {
		app = ""
	} else if !keys.ValidApp(app) {
		return inv.Fail("no such app: %s (`enable --all` lifts the server-wide switch)", truncate(app, 40))
	}
	state, err := a.d.Gate.DisabledState(ctx, app)
	if err != nil {
		return a.internal(inv, "read switches", err)
	}
	if state == nil {
		if app == "" {
			fmt.Fprintln(inv.Stdout, "Pushes were not disabled server-wide.")
		} else {
			fmt.Fprintf(inv.Stdout, "Pushes to %s were not disabled.\n", app)
		}
		return 0
	}
	if err := a.d.Gate.Enable(ctx, app); err != nil {
		return a.internal(inv, "enable", err)
	}
	if app == "" {
		fmt.Fprintln(inv.Stdout, "Pushes are accepted again (apps disabled one by one stay disabled).")
	} else {
		fmt.Fprintf(inv.Stdout, "Pushes to %s are accepted again.\n", app)
	}
	return 0
}

// internal logs err and tells the user something went wrong on our side.
func (a *appCmds) internal(inv *Invocation, what string, err error) int {
	inv.Log.Error("command failed", "what", what, "err", err)
	return inv.Fail("could not %s: the server had a problem (the operator's log has the details); try again in a moment", what)
}

func boolExit(ok bool) int {
	if ok {
		return 0
	}
	return 1
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// keysLink is Heroku mode's keys:add: stdin holds the account's API token on
// its first line and the public key after it; the key is registered only if
// Heroku says it is on that account (SPEC G6). The token is never echoed.
func (a *appCmds) keysLink(ctx context.Context, inv *Invocation) int {
	if a.d.Linker == nil || len(inv.Args) != 1 {
		if a.d.Linker == nil {
			return inv.Fail("keys:add --heroku needs the server in Heroku mode (--release heroku)")
		}
		return inv.Fail("usage: keys:add --heroku < token-then-key")
	}
	data, err := io.ReadAll(io.LimitReader(inv.Stdin, 64<<10))
	if err != nil {
		return inv.Fail("read stdin: %v", err)
	}
	token, key, _ := strings.Cut(string(data), "\n")
	if strings.TrimSpace(token) == "" || strings.TrimSpace(key) == "" {
		return inv.Fail("keys:add --heroku reads a Heroku API token line, then the public key, from stdin")
	}
	k, err := a.d.Linker.LinkKey(ctx, token, []byte(key))
	if err != nil {
		if um, ok := errors.AsType[interface {
			error
			UserMessage() string
		}](err); ok {
			return inv.Fail("%s", um.UserMessage())
		}
		return a.internal(inv, "link key", err)
	}
	fmt.Fprintf(inv.Stdout, "Linked %s key %s to the Heroku account %s.\n", k.Type(), k.Fingerprint, k.User)
	return 0
}
