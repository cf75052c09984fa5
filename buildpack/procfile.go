package buildpack

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var procTypeRE = regexp.MustCompile(`^[-\w]{1,128}$`)

// ParseProcfile reads "type: command" lines (SPEC E4). Blank lines and lines
// starting with # are ignored; anything else that does not parse fails with its
// line number.
func ParseProcfile(data []byte) (map[string]string, error) {
	types := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: line %d: expected \"type: command\"", ErrProcfile, n)
		case !procTypeRE.MatchString(name):
			return nil, fmt.Errorf("%w: line %d: process type %q must be letters, digits, - or _ (at most 128)", ErrProcfile, n, name)
		case cmd == "":
			return nil, fmt.Errorf("%w: line %d: process type %q has no command", ErrProcfile, n, name)
		}
		if _, dup := types[name]; dup {
			return nil, fmt.Errorf("%w: line %d: process type %q declared twice", ErrProcfile, n, name)
		}
		types[name] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProcfile, err)
	}
	return types, nil
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
	DefaultProcessTypes map[string]string `yaml:"default_process_types"`
	Addons              []string          `yaml:"addons"`
	ConfigVars          map[string]string `yaml:"config_vars"`
}

func parseRelease(data []byte) (releaseInfo, error) {
	var r releaseInfo
	if len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	if err := yaml.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%w: output is not valid YAML: %v", ErrRelease, err)
	}
	for name := range r.DefaultProcessTypes {
		if !procTypeRE.MatchString(name) {
			return r, fmt.Errorf("%w: bad process type %q", ErrRelease, name)
		}
	}
	return r, nil
}
