package buildpack

// Fuzz targets for the parsers of what a push (or a buildpack) sends: the
// Procfile, .buildpacks, .slugignore and bin/release's YAML. `make fuzz`
// runs each for FUZZTIME; the seeds, the hostile inputs of issue 10 among
// them, and whatever the fuzzers found are in testdata/fuzz/FuzzX/ and run
// with every `go test`.

import (
	"bufio"
	"bytes"
	"path"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func FuzzParseProcfile(f *testing.F) {
	f.Add([]byte("web: bundle exec puma -C config/puma.rb\nworker: sidekiq\n# comment\n\n"))
	f.Add([]byte(strings.Repeat("web: x\n", 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		types, err := ParseProcfile(data)
		if err != nil {
			if types != nil {
				t.Fatalf("types %v with error %v", types, err)
			}
			if msg := procfileMessage(err); len(msg) > 300 || !printable(msg) {
				t.Fatalf("message to the pusher: %.400q", msg)
			}
			return
		}
		if len(data) > 1<<20 || len(types) > 100 {
			t.Fatalf("%d bytes, %d types accepted", len(data), len(types))
		}
		for name, cmd := range types {
			if !procTypeRE.MatchString(name) || cmd == "" || len(cmd) > 4096 || strings.ContainsAny(cmd, "\n") ||
				cmd != strings.TrimSpace(cmd) {
				t.Fatalf("accepted %q: %q", name, cmd)
			}
		}
	})
}

func FuzzReadBuildpacksFile(f *testing.F) {
	f.Add([]byte("# first the runtime\nhttps://example.com/a.git#v1\n\n   \n  https://example.com/b.tgz  \nheroku/python\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		urls, err := ReadBuildpacksFile(data)
		if err != nil {
			// The refusal is printed to the pusher: it must not carry the
			// line it refuses.
			if urls != nil || !printable(err.Error()) || len(err.Error()) > 200 {
				t.Fatalf("ReadBuildpacksFile = %q, %q", urls, err)
			}
			return
		}
		if len(urls) > 32 {
			t.Fatalf("%d URLs", len(urls))
		}
		for _, u := range urls {
			if u == "" || strings.HasPrefix(u, "#") || len(u) > 2048 || !printable(u) || u != strings.TrimSpace(u) {
				t.Fatalf("accepted %q", u)
			}
		}
	})
}

// FuzzSlugignore parses a .slugignore and matches every rule against a path,
// checking the step bound and, where it is cheap, that the matcher agrees
// with the recursive one it replaced (reference, below).
func FuzzSlugignore(f *testing.F) {
	f.Add([]byte("# comment\n\n*.psd\n/docs\nspec/fixtures/\nlog/\n**/cache/*.bin\n!keep.psd\nassets/**/*.map\n"), "assets/js/app.js.map", false)
	f.Add([]byte(strings.Repeat("**/d/", 6)+"x"), deepPath(20), false)
	f.Add([]byte("a/**/**/b\n**\n/**\n[a-\n\\*x\n"), "a/b", true)
	f.Fuzz(func(t *testing.T, data []byte, rel string, isDir bool) {
		rules, skipped, err := parseSlugignore(data)
		if err != nil {
			if rules != nil || skipped != nil || len(err.Error()) > 200 || !printable(err.Error()) {
				t.Fatalf("rules %v, skipped %v with error %v", rules, skipped, err)
			}
			return
		}
		if len(data) > 1<<20 || len(rules) > 1000 {
			t.Fatalf("%d bytes, %d rules accepted", len(data), len(rules))
		}
		ref := referenceParse(data)
		if len(ref) != len(rules) {
			t.Fatalf("%d rules, the reference parse has %d", len(rules), len(ref))
		}
		if rel == "" || strings.HasPrefix(rel, "/") || strings.HasSuffix(rel, "/") || strings.Contains(rel, "//") {
			return // WalkDir never gives such a path
		}
		name := strings.Split(rel, "/")
		if len(rules) > 64 {
			rules = rules[:64] // matching all 1000 makes each run slow, not better
		}
		for i, r := range rules {
			if len(r.segs) == 0 {
				t.Fatalf("rule %d has no segments", i)
			}
			for j := 1; j < len(r.segs); j++ {
				if r.segs[j] == "**" && r.segs[j-1] == "**" {
					t.Fatalf("a run of ** reached the matcher: %q", r.segs)
				}
			}
			ok, steps := matchSegs(r.segs, name)
			if steps > len(r.segs)*len(name) {
				t.Fatalf("%d steps for %q against %q", steps, r.segs, name)
			}
			got := r.match(rel, isDir)
			if got != (ok && (isDir || !r.dirOnly)) {
				t.Fatalf("match = %v, matchSegs = %v", got, ok)
			}
			// The reference is exponential in the number of **: only
			// where it is cheap.
			if strings.Count(strings.Join(ref[i].segs, "/"), "**") <= 6 && len(name) <= 12 {
				if want := ref[i].match(rel, isDir); got != want {
					t.Fatalf("%q against %q (dir %v): %v, the reference says %v", ref[i].segs, rel, isDir, got, want)
				}
			}
		}
	})
}

// referenceParse and referenceRule are the .slugignore parser and matcher
// before issue 10, kept as the definition of the syntax; the scanner's
// buffer is raised so a long line does not end the file early.
func referenceParse(data []byte) (rules []referenceRule) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 2<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, "!"):
			continue
		}
		line = strings.TrimLeft(line, " \t")
		r := referenceRule{}
		if strings.HasSuffix(line, "/") {
			r.dirOnly = true
			line = strings.TrimRight(line, "/")
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			continue
		}
		r.segs = strings.Split(line, "/")
		if !anchored {
			r.segs = append([]string{"**"}, r.segs...)
		}
		rules = append(rules, r)
	}
	return rules
}

type referenceRule struct {
	segs    []string
	dirOnly bool
}

func (r referenceRule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	return referenceMatch(r.segs, strings.Split(rel, "/"))
}

func referenceMatch(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return len(name) > 0
			}
			for i := 0; i <= len(name); i++ {
				if referenceMatch(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// FuzzParseRelease checks the bounds on what parseRelease accepts and, for
// small inputs, that what it accepts yaml.Unmarshal reads the same way (the
// behaviour before issue 10, where it is not quadratic).
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("---\naddons:\n  - heroku-postgresql:mini\nconfig_vars:\n  LANG: en_US.UTF-8\ndefault_process_types:\n  web: bundle exec puma -p $PORT\n"))
	f.Add([]byte("default_process_types:\n  web: &w ./serve\n  worker: *w\n  console: ~\n"))
	f.Add([]byte("default_process_types: {web: x, web: y}\n"))
	f.Add(hostileRelease("aliases", 2<<10))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRelease(data)
		if err != nil {
			if len(err.Error()) > 600 || !printable(err.Error()) {
				t.Fatalf("message to the pusher: %.700q", err)
			}
			return
		}
		if len(data) > 64<<10 || len(r.DefaultProcessTypes) > 100 {
			t.Fatalf("%d bytes, %d types accepted", len(data), len(r.DefaultProcessTypes))
		}
		for name, cmd := range r.DefaultProcessTypes {
			if !procTypeRE.MatchString(name) || len(cmd) > 4096 {
				t.Fatalf("accepted %q: %.100q", name, cmd)
			}
		}
		if len(data) > 2<<10 || len(bytes.TrimSpace(data)) == 0 {
			return // the old parser is quadratic; it took blank output as empty too
		}
		var old struct {
			DefaultProcessTypes map[string]string `yaml:"default_process_types"`
			Addons              []string          `yaml:"addons"`
			ConfigVars          map[string]string `yaml:"config_vars"`
		}
		if err := yaml.Unmarshal(data, &old); err != nil {
			t.Fatalf("accepted, but yaml.Unmarshal says %v", err)
		}
		if !reflect.DeepEqual(releaseInfo(old), r) {
			t.Fatalf("parseRelease = %#v, yaml.Unmarshal = %#v", r, old)
		}
	})
}
