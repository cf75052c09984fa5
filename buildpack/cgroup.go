package buildpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Every build runs in a cgroup of its own with a process (task) limit and a
// memory limit (README "Sandbox"), so a fork bomb or a runaway compile ends
// that build and nothing else. The cgroup is made under the server's own: on
// cgroup v2 that needs a delegated subtree (systemd's Delegate=), on v1 the
// pids and memory hierarchies the machine mounts. Either controller may be
// missing; the server says so once at start (Builder.Limits).

// cgroupCtl is where one controller's build cgroups are made.
type cgroupCtl struct {
	parent string // the server's cgroup directory in that hierarchy
	v2     bool
}

// cgroupHost is what this machine offers for build limits, found once.
type cgroupHost struct {
	pids, memory *cgroupCtl // nil: that limit cannot be set here
}

// buildCgroup is one build's cgroup: one directory on v2, one per hierarchy
// on v1.
type buildCgroup struct {
	dirs      []string // distinct directories, in the order they were made
	pidsDir   string   // "" without a process limit
	memDir    string   // "" without a memory limit
	memV2     bool
	pids, mem int64 // the limits, for the message
}

// cgroupSeq makes build cgroup names unique within this process; the pid in
// the name keeps servers sharing a cgroup (tests, two data directories)
// apart and lets a restarted server sweep what a dead one left.
var cgroupSeq atomic.Int64

var buildCgroupName = regexp.MustCompile(`^sokoban-build-(\d+)-\d+$`)

// findCgroups reads where this process sits in each cgroup hierarchy
// (/proc/self/cgroup) and where the hierarchies are mounted
// (/proc/self/mountinfo), and returns the server's own cgroup directory for
// each of the pids and memory controllers, preferring v2. It only reads;
// whether a directory can be used is for prepare to find out.
func findCgroups(selfCgroup, mountinfo []byte) (pids, memory *cgroupCtl) {
	type mnt struct{ root, point string }
	var v2 *mnt
	v1 := map[string]mnt{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		m := mnt{root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		switch g[0] {
		case "cgroup2":
			if v2 == nil {
				v2 = &m
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if _, seen := v1[opt]; !seen {
					v1[opt] = m
				}
			}
		}
	}
	dir := func(m mnt, path string) string {
		if m.root != "/" {
			// Inside a cgroup namespace the mount shows a subtree.
			path = strings.TrimPrefix(path, m.root)
		}
		return filepath.Join(m.point, path)
	}
	for _, line := range strings.Split(string(selfCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			// v2 wins where both offer a controller (a hybrid machine).
			if v2 == nil {
				continue
			}
			d := dir(*v2, parts[2])
			ctrl, _ := os.ReadFile(filepath.Join(d, "cgroup.controllers"))
			have := strings.Fields(string(ctrl))
			if slices.Contains(have, "pids") {
				pids = &cgroupCtl{parent: d, v2: true}
			}
			if slices.Contains(have, "memory") {
				memory = &cgroupCtl{parent: d, v2: true}
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m, ok := v1[c]
			if !ok {
				continue
			}
			switch {
			case c == "pids" && pids == nil:
				pids = &cgroupCtl{parent: dir(m, parts[2])}
			case c == "memory" && memory == nil:
				memory = &cgroupCtl{parent: dir(m, parts[2])}
			}
		}
	}
	return pids, memory
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// discoverCgroups finds the controllers on this machine and makes them
// usable: on v2 the controllers are enabled for the server's children,
// which the kernel allows only once the server's cgroup holds no process, so
// the server first moves itself into a leaf of its own ("server"). It
// returns why a wanted limit cannot be set.
func discoverCgroups(wantPids, wantMemory bool) (*cgroupHost, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return &cgroupHost{}, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return &cgroupHost{}, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	pids, memory := findCgroups(self, mi)
	if !wantPids {
		pids = nil
	}
	if !wantMemory {
		memory = nil
	}
	var errs []error
	if wantPids && pids == nil {
		errs = append(errs, errors.New("no pids controller (cgroup v2 with pids delegated, or v1's pids hierarchy)"))
	}
	if wantMemory && memory == nil {
		errs = append(errs, errors.New("no memory controller (cgroup v2 with memory delegated, or v1's memory hierarchy)"))
	}
	var v2 []string
	for _, c := range []struct {
		name string
		ctl  *cgroupCtl
	}{{"pids", pids}, {"memory", memory}} {
		if c.ctl != nil && c.ctl.v2 {
			v2 = append(v2, c.name)
		}
	}
	if len(v2) > 0 {
		if err := enableV2(pids, memory, v2); err != nil {
			errs = append(errs, err)
			if pids != nil && pids.v2 {
				pids = nil
			}
			if memory != nil && memory.v2 {
				memory = nil
			}
		}
	}
	h := &cgroupHost{pids: pids, memory: memory}
	h.sweep()
	return h, errors.Join(errs...)
}

// enableV2 turns the v2 controllers on for the server's child cgroups.
func enableV2(pids, memory *cgroupCtl, names []string) error {
	dir := memory
	if pids != nil && pids.v2 {
		dir = pids
	}
	parent := dir.parent
	sub, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", parent, err)
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(strings.Fields(string(sub)), n) {
			missing = append(missing, "+"+n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	procs, err := os.ReadFile(filepath.Join(parent, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", parent, err)
	}
	self := strconv.Itoa(os.Getpid())
	for _, p := range strings.Fields(string(procs)) {
		if p != self {
			return fmt.Errorf("cgroup v2 %s holds other processes than this server; run it as a service with Delegate=yes", parent)
		}
	}
	if len(procs) > 0 {
		leaf := filepath.Join(parent, "server")
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup v2 %s is not delegated to this server (Delegate=yes): %w", parent, err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(self), 0o644); err != nil {
			return fmt.Errorf("cgroup v2: move the server into %s: %w", leaf, err)
		}
	}
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(strings.Join(missing, " ")), 0o644); err != nil {
		return fmt.Errorf("cgroup v2 %s: enable %s: %w", parent, strings.Join(missing, " "), err)
	}
	return nil
}

// sweep removes empty build cgroups that a server which is gone left
// behind (killed before it could remove them).
func (h *cgroupHost) sweep() {
	for _, c := range []*cgroupCtl{h.pids, h.memory} {
		if c == nil {
			continue
		}
		entries, _ := os.ReadDir(c.parent)
		for _, e := range entries {
			m := buildCgroupName.FindStringSubmatch(e.Name())
			if m == nil || !e.IsDir() {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || processExists(pid) {
				continue
			}
			_ = os.Remove(filepath.Join(c.parent, e.Name())) // fails while processes remain
		}
	}
}

func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// create makes a build's cgroup with its limits. pids or mem <= 0 set no
// limit of that kind.
func (h *cgroupHost) create(pids, mem int64) (*buildCgroup, error) {
	name := fmt.Sprintf("sokoban-build-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	cg := &buildCgroup{pids: pids, mem: mem}
	mk := func(parent string) (string, error) {
		d := filepath.Join(parent, name)
		if slices.Contains(cg.dirs, d) {
			return d, nil
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
		cg.dirs = append(cg.dirs, d)
		return d, nil
	}
	fail := func(err error) (*buildCgroup, error) {
		_ = cg.remove()
		return nil, err
	}
	if h.pids != nil && pids > 0 {
		d, err := mk(h.pids.parent)
		if err != nil {
			return fail(fmt.Errorf("process limit: %w", err))
		}
		if err := writeCgroup(d, "pids.max", pids); err != nil {
			return fail(fmt.Errorf("process limit: %w", err))
		}
		cg.pidsDir = d
	}
	if h.memory != nil && mem > 0 {
		d, err := mk(h.memory.parent)
		if err != nil {
			return fail(fmt.Errorf("memory limit: %w", err))
		}
		cg.memDir, cg.memV2 = d, h.memory.v2
		if cg.memV2 {
			err = writeCgroup(d, "memory.max", mem)
			// Swap would let a build use more than its limit; the whole
			// build is killed at once when the limit is hit.
			_ = writeCgroup(d, "memory.swap.max", 0)
			_ = writeCgroup(d, "memory.oom.group", 1)
		} else {
			err = writeCgroup(d, "memory.limit_in_bytes", mem)
			// Only where swap accounting is on; it must not be below the limit.
			_ = writeCgroup(d, "memory.memsw.limit_in_bytes", mem)
		}
		if err != nil {
			return fail(fmt.Errorf("memory limit: %w", err))
		}
	}
	return cg, nil
}

func writeCgroup(dir, file string, v int64) error {
	return os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(v, 10)), 0o644)
}

// join is the argv prefix that puts a step's first process into the
// cgroup before it runs anything: a shell that writes its own pid into each
// cgroup.procs and then execs the step. Moving a process after it started
// would let the children it forked in the meantime escape the limits.
func (cg *buildCgroup) join() []string {
	const script = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"`
	argv := []string{"/bin/sh", "-c", script, "sh", strconv.Itoa(len(cg.dirs))}
	for _, d := range cg.dirs {
		argv = append(argv, filepath.Join(d, "cgroup.procs"))
	}
	return argv
}

// hit says which limit the build ran into, if any: a fork refused at the
// process limit, or a process the kernel killed at the memory limit.
func (cg *buildCgroup) hit() error {
	if cg.pidsDir != "" && cgroupCount(filepath.Join(cg.pidsDir, "pids.events"), "max") > 0 {
		return fmt.Errorf("%w (%d)", ErrProcessLimit, cg.pids)
	}
	if cg.memDir != "" {
		file := "memory.oom_control"
		if cg.memV2 {
			file = "memory.events"
		}
		if cgroupCount(filepath.Join(cg.memDir, file), "oom_kill") > 0 {
			return fmt.Errorf("%w (%s)", ErrMemoryLimit, Limit(cg.mem))
		}
	}
	return nil
}

// cgroupCount reads one "key N" line of a cgroup's flat keyed file.
func cgroupCount(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(" "))
		if ok && string(k) == key {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}

// watch ends the build (stop) as soon as it hits a limit, polling until ctx
// ends. A fork bomb at its limit only spins, so it is ended here instead of
// running into the compile timeout.
func (cg *buildCgroup) watch(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := cg.hit(); err != nil {
				stop(err)
				return
			}
		}
	}
}

// remove kills whatever is left in the build's cgroup (without a sandbox a
// process that left its process group can be) and removes it.
func (cg *buildCgroup) remove() error {
	var errs []error
	for i := len(cg.dirs) - 1; i >= 0; i-- {
		d := cg.dirs[i]
		// cgroup.kill (v2, Linux 5.14) ends everything at once; otherwise
		// kill what is listed until nothing is.
		_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0o644)
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, p := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(p); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			// Killed processes take a moment to leave the cgroup.
			time.Sleep(5 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}
