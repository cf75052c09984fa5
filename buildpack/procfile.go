package buildpack

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var procTypeRE = regexp.MustCompile(`^[-\w]{1,128}$`)

// Bounds on process types, from a Procfile or bin/release (issue 10): they
// end up in every release record, and a 10 MB Procfile made a 14 MB one.
// Heroku apps declare a handful of types with one-line commands.
const (
	maxProcfileSize = 1 << 20 // bytes
	maxProcessTypes = 100
	maxCommand      = 4 << 10 // bytes in one command
)

// ParseProcfile reads "type: command" lines (SPEC E4). Blank lines and lines
// starting with # are ignored; anything else that does not parse fails with its
// line number, and so does a Procfile past the bounds above.
func ParseProcfile(data []byte) (map[string]string, error) {
	if len(data) > maxProcfileSize {
		return nil, fmt.Errorf("%w: larger than %s", ErrProcfile, Limit(maxProcfileSize))
	}
	types := map[string]string{}
	n := 0
	for raw := range bytes.Lines(data) {
		n++
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !ok {
			return nil, fmt.Errorf("%w: line %d: expected \"type: command\"", ErrProcfile, n)
		}
		if err := checkProcessType(types, name, cmd); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrProcfile, n, err)
		}
		if cmd == "" {
			return nil, fmt.Errorf("%w: line %d: process type %q has no command", ErrProcfile, n, name)
		}
		types[name] = cmd
	}
	return types, nil
}

// checkProcessType is the rule a new entry name: cmd of types must meet,
// wherever it comes from.
func checkProcessType(types map[string]string, name, cmd string) error {
	switch _, dup := types[name]; {
	case !procTypeRE.MatchString(name):
		return fmt.Errorf("process type %s must be letters, digits, - or _ (at most 128)", quoteShort(name))
	case dup:
		return fmt.Errorf("process type %q declared twice", name)
	case len(types) == maxProcessTypes:
		return fmt.Errorf("more than %d process types", maxProcessTypes)
	case len(cmd) > maxCommand:
		return fmt.Errorf("the command of %q is longer than %s", name, Limit(maxCommand))
	}
	return nil
}

// quoteShort quotes the start of s for a message to the pusher: a name from
// a push may be a megabyte long and hold escape sequences.
func quoteShort(s string) string {
	const keep = 40
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:keep], "")) + "..."
}

// readProcfile returns the Procfile in dir, or nil when there is none.
func readProcfile(dir string) (map[string]string, error) {
	data, err := readSourceFile(dir, "Procfile", MaxSourceFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProcfile, err)
	}
	if data == nil {
		return nil, nil
	}
	return ParseProcfile(data)
}

// releaseInfo is bin/release's YAML (SPEC C7).
type releaseInfo struct {
	DefaultProcessTypes map[string]string
	Addons              []string // legacy: read and checked, not used
	ConfigVars          map[string]string
}

// maxReleaseOutput bounds what parseRelease reads: real bin/release output
// is a few hundred bytes.
const maxReleaseOutput = 64 << 10

// parseRelease reads bin/release's output with memory linear in its size.
//
// yaml.Unmarshal into a struct or map compares every key of a mapping with
// every other and formats an error string for each repeated pair, so repeated
// keys cost quadratic memory, and that error, all of it, reached the pusher.
// Measured (TotalAlloc of yaml.Unmarshal alone, issue 10): 15 KiB of
// "  web: x" lines under default_process_types allocated 262 MiB, 30 KiB
// 1,032 MiB; 15 KiB of "a: x" at the top 831 MiB. Parsing into a yaml.Node
// does none of that: it allocates 50 to 130 times its input (1 MiB: 57 MiB
// of repeated keys, 126 MiB of "[a,a,...]"; nesting stops at yaml.v3's depth
// limit after 5 MiB). So the output is capped at 64 KiB, where the worst
// shape found allocates 8.2 MiB (repeated keys 4.0 MiB, repeated top-level
// keys 6.7 MiB; TestReleaseParseMemory pins 16 MiB), and the node tree is
// walked here with duplicates found through a map.
//
// Aliases are followed (one level: an anchor is never on an alias, and
// nothing is expanded), merge keys (<<) are refused; unknown top-level keys
// are ignored as before.
func parseRelease(data []byte) (releaseInfo, error) {
	var r releaseInfo
	if len(data) > maxReleaseOutput {
		return r, fmt.Errorf("%w: output is larger than %s", ErrRelease, Limit(maxReleaseOutput))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return r, fmt.Errorf("%w: output is not valid YAML: %v", ErrRelease, err)
	}
	if len(doc.Content) == 0 { // comments only
		return r, nil
	}
	top := deref(doc.Content[0])
	if isNull(top) {
		return r, nil
	}
	if top.Kind != yaml.MappingNode {
		return r, fmt.Errorf("%w: line %d: output is not a YAML mapping", ErrRelease, top.Line)
	}
	err := eachPair(top, "", func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "default_process_types":
			r.DefaultProcessTypes, err = stringMap(v, key, checkProcessType)
		case "config_vars":
			r.ConfigVars, err = stringMap(v, key, nil)
		case "addons":
			r.Addons, err = stringList(v, key)
		}
		return err
	})
	if err != nil {
		return releaseInfo{}, fmt.Errorf("%w: %v", ErrRelease, err)
	}
	return r, nil
}

// eachPair calls f with each key of mapping m and its value, refusing keys
// that are not strings, merge keys and repeated keys, and skipping null keys.
func eachPair(m *yaml.Node, where string, f func(key string, v *yaml.Node) error) error {
	seen := make(map[string]bool, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		switch {
		case k.Kind != yaml.ScalarNode:
			return fmt.Errorf("line %d: %skey is not a string", k.Line, where)
		case k.ShortTag() == "!!merge":
			return fmt.Errorf("line %d: %smerge keys (<<) are not supported", k.Line, where)
		case seen[k.Value]:
			return fmt.Errorf("line %d: %skey %s appears twice", k.Line, where, quoteShort(k.Value))
		}
		seen[k.Value] = true
		if isNull(k) {
			continue // yaml.Unmarshal drops a null key, so do we
		}
		if err := f(k.Value, deref(m.Content[i+1])); err != nil {
			return err
		}
	}
	return nil
}

// stringMap reads a mapping of strings; check, when set, vets each new entry
// against those before it.
func stringMap(n *yaml.Node, name string, check func(m map[string]string, k, v string) error) (map[string]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: %s is not a mapping", n.Line, name)
	}
	m := map[string]string{}
	err := eachPair(n, name+": ", func(k string, v *yaml.Node) error {
		s, err := scalar(v, name+"."+quoteShort(k))
		if err == nil && check != nil {
			if err = check(m, k, s); err != nil {
				err = fmt.Errorf("line %d: %s: %v", v.Line, name, err)
			}
		}
		m[k] = s
		return err
	})
	return m, err
}

func stringList(n *yaml.Node, name string) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s is not a list", n.Line, name)
	}
	list := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if e = deref(e); isNull(e) {
			continue // as yaml.Unmarshal does
		}
		s, err := scalar(e, name)
		if err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	return list, nil
}

// scalar is n's text, as yaml.Unmarshal into a string gives it: null is "".
func scalar(n *yaml.Node, name string) (string, error) {
	switch {
	case isNull(n):
		return "", nil
	case n.Kind != yaml.ScalarNode:
		return "", fmt.Errorf("line %d: %s is not a string", n.Line, name)
	}
	return n.Value, nil
}

func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
