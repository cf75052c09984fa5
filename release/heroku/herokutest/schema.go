package herokutest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// schemaJSON is Heroku's Platform API schema (JSON hyper-schema, draft 04), copied
// from ../shared/heroku-platform-api with its license (testdata/LICENSE-heroku-go)
// so the suite runs from a clone of this repository alone.
//
//go:embed testdata/schema.json
var schemaJSON []byte

// Schema is the Platform API schema, able to check a request against the links
// it defines. Only the subset of JSON Schema that the Heroku schema uses for
// request bodies is implemented: $ref, anyOf/oneOf/allOf, type, enum, required,
// properties, patternProperties, additionalProperties, items, pattern,
// min/maxLength, minimum/maximum, min/maxItems and the uuid and date-time
// formats. oneOf is checked like anyOf. A pattern Go's regexp cannot compile
// (ECMAScript look-ahead) is not checked.
type Schema struct {
	root  any
	links []*link

	mu  sync.Mutex
	res map[string]*regexp.Regexp // nil value: the pattern does not compile in RE2
}

// link is one of the schema's links: a method, an href template and the schema
// of the request body.
type link struct {
	Method string
	Href   string
	Title  string
	segs   []segment
	body   any // nil: the link takes no body
	target any // the answer's schema
}

// segment is one path segment of an href: a literal, or a placeholder whose
// value must satisfy the schema at ref.
type segment struct {
	literal string
	ref     string
}

// LoadSchema parses a Platform API schema; data nil loads the embedded copy.
func LoadSchema(data []byte) (*Schema, error) {
	if data == nil {
		data = schemaJSON
	}
	root, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("herokutest: parse schema: %w", err)
	}
	s := &Schema{root: root, res: map[string]*regexp.Regexp{}}
	defs, _ := obj(root)["definitions"].(map[string]any)
	if len(defs) == 0 {
		return nil, fmt.Errorf("herokutest: schema has no definitions")
	}
	for _, name := range sortedKeys(defs) {
		links, _ := obj(defs[name])["links"].([]any)
		for _, l := range links {
			lm := obj(l)
			method, _ := lm["method"].(string)
			href, _ := lm["href"].(string)
			title, _ := lm["title"].(string)
			if method == "" || href == "" {
				continue
			}
			ln := &link{Method: strings.ToUpper(method), Href: href, Title: name + " " + title,
				body: lm["schema"], target: lm["targetSchema"]}
			for _, seg := range strings.Split(strings.TrimPrefix(href, "/"), "/") {
				if strings.HasPrefix(seg, "{(") && strings.HasSuffix(seg, ")}") {
					ref, err := url.PathUnescape(seg[2 : len(seg)-2])
					if err != nil {
						return nil, fmt.Errorf("herokutest: href %s: %w", href, err)
					}
					ln.segs = append(ln.segs, segment{ref: ref})
					continue
				}
				ln.segs = append(ln.segs, segment{literal: seg})
			}
			s.links = append(s.links, ln)
		}
	}
	if len(s.links) == 0 {
		return nil, fmt.Errorf("herokutest: schema has no links")
	}
	return s, nil
}

// Check validates one request: method and path against the links' href
// templates (a placeholder accepts one path segment that satisfies the
// identity it names), then the JSON body against the matching link's schema.
// It returns the matched link's href (empty when none matched) and every
// violation found.
func (s *Schema) Check(method, escapedPath string, body []byte) (href string, violations []string) {
	raw := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		v, err := url.PathUnescape(r)
		if err != nil {
			return "", []string{fmt.Sprintf("path %s: bad escape in segment %q", escapedPath, r)}
		}
		segs[i] = v
	}
	var (
		candidates []*link
		otherVerbs []string
		pathErrs   []string
	)
	for _, l := range s.links {
		if errs := s.matchPath(l, segs); len(errs) > 0 {
			if len(errs) == 1 && errs[0] == "" {
				continue // a literal differs: not this link at all
			}
			pathErrs = append(pathErrs, fmt.Sprintf("%s %s: %s", l.Method, l.Href, strings.Join(errs, "; ")))
			continue
		}
		if l.Method != method {
			otherVerbs = append(otherVerbs, l.Method)
			continue
		}
		candidates = append(candidates, l)
	}
	if len(candidates) == 0 {
		switch {
		case len(otherVerbs) > 0:
			slices.Sort(otherVerbs)
			return "", []string{fmt.Sprintf("%s %s: the schema has no %s link for this path (it has %s)",
				method, escapedPath, method, strings.Join(slices.Compact(otherVerbs), ", "))}
		case len(pathErrs) > 0:
			return "", []string{fmt.Sprintf("%s %s: path parameters do not satisfy the schema: %s",
				method, escapedPath, strings.Join(pathErrs, " | "))}
		}
		return "", []string{fmt.Sprintf("%s %s: no link in the schema matches this path", method, escapedPath)}
	}

	var value any
	if len(bytes.TrimSpace(body)) > 0 {
		v, err := decode(body)
		if err != nil {
			return candidates[0].Href, []string{fmt.Sprintf("%s %s: body is not JSON: %v", method, escapedPath, err)}
		}
		value = v
	}
	var all []string
	for _, l := range candidates {
		var errs []string
		switch {
		case l.body == nil && value != nil:
			errs = append(errs, "body: this link takes no body")
		case l.body != nil:
			v := value
			if v == nil {
				v = map[string]any{} // an empty body is an empty object to the API
			}
			s.validate(l.body, v, "body", &errs, 0)
		}
		if len(errs) == 0 {
			return l.Href, nil
		}
		for _, e := range errs {
			all = append(all, fmt.Sprintf("%s %s (%s): %s", method, escapedPath, l.Title, e))
		}
	}
	return candidates[0].Href, all
}

// CheckAnswer validates an answer body against the targetSchema of the link at
// method+href; the fake uses it on its own answers.
func (s *Schema) CheckAnswer(method, href string, body []byte) []string {
	for _, l := range s.links {
		if l.Method != method || l.Href != href || l.target == nil {
			continue
		}
		v, err := decode(body)
		if err != nil {
			return []string{fmt.Sprintf("answer to %s %s is not JSON: %v", method, href, err)}
		}
		var errs []string
		s.validate(l.target, v, "answer", &errs, 0)
		return errs
	}
	return nil
}

// matchPath returns nil when segs fit l's template, [""] when a literal differs
// (or the length), and the reasons when only placeholders failed.
func (s *Schema) matchPath(l *link, segs []string) []string {
	if len(segs) != len(l.segs) {
		return []string{""}
	}
	for i, t := range l.segs {
		if t.ref == "" && t.literal != segs[i] {
			return []string{""}
		}
	}
	var errs []string
	for i, t := range l.segs {
		if t.ref == "" {
			continue
		}
		sch, err := s.resolve(t.ref)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if segs[i] == "" {
			errs = append(errs, fmt.Sprintf("segment %d is empty", i+1))
			continue
		}
		var perr []string
		s.validate(sch, segs[i], "path", &perr, 0)
		if len(perr) > 0 {
			// An identity may be an integer (a release version): a path carries it as text.
			if _, err := strconv.ParseInt(segs[i], 10, 64); err == nil {
				var nerr []string
				s.validate(sch, json.Number(segs[i]), "path", &nerr, 0)
				if len(nerr) == 0 {
					continue
				}
			}
			errs = append(errs, fmt.Sprintf("segment %q is not a valid %s", segs[i], t.ref))
		}
	}
	return errs
}

// resolve follows a local JSON pointer ("#/definitions/app/definitions/identity").
func (s *Schema) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, fmt.Errorf("unsupported $ref %q", ref)
	}
	cur := s.root
	for _, tok := range strings.Split(strings.TrimPrefix(ref[1:], "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is not an object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q: no %q", ref, tok)
		}
	}
	return cur, nil
}

// maxDepth stops a cyclic $ref from recursing forever.
const maxDepth = 64

func (s *Schema) validate(sch, v any, at string, errs *[]string, depth int) {
	if depth > maxDepth {
		*errs = append(*errs, at+": schema nests too deep")
		return
	}
	m, ok := sch.(map[string]any)
	if !ok {
		return // true/absent schema: anything goes
	}
	if ref, ok := m["$ref"].(string); ok {
		target, err := s.resolve(ref)
		if err != nil {
			*errs = append(*errs, at+": "+err.Error())
			return
		}
		s.validate(target, v, at, errs, depth+1) // draft 04: siblings of $ref are ignored
		return
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		branches, ok := m[kw].([]any)
		if !ok {
			continue
		}
		matched := false
		var reasons []string
		for _, b := range branches {
			var be []string
			s.validate(b, v, at, &be, depth+1)
			if len(be) == 0 {
				matched = true
				break
			}
			reasons = append(reasons, strings.Join(be, ", "))
		}
		if !matched {
			*errs = append(*errs, fmt.Sprintf("%s: matches none of %s [%s]", at, kw, strings.Join(reasons, " | ")))
		}
	}
	if all, ok := m["allOf"].([]any); ok {
		for _, b := range all {
			s.validate(b, v, at, errs, depth+1)
		}
	}
	if t, ok := m["type"]; ok {
		var allowed []string
		switch tt := t.(type) {
		case string:
			allowed = []string{tt}
		case []any:
			for _, x := range tt {
				if xs, ok := x.(string); ok {
					allowed = append(allowed, xs)
				}
			}
		}
		if got := jsonType(v); len(allowed) > 0 && !typeAllowed(allowed, got) {
			*errs = append(*errs, fmt.Sprintf("%s: is %s, want %s", at, got, strings.Join(allowed, " or ")))
			return // the keywords below assume the right type
		}
	}
	if enum, ok := m["enum"].([]any); ok {
		got, _ := json.Marshal(v)
		found := false
		for _, e := range enum {
			if want, _ := json.Marshal(e); bytes.Equal(got, want) {
				found = true
				break
			}
		}
		if !found {
			*errs = append(*errs, fmt.Sprintf("%s: %s is not one of the allowed values", at, got))
		}
	}
	switch val := v.(type) {
	case string:
		s.validateString(m, val, at, errs)
	case json.Number:
		f, _ := val.Float64()
		if lo, ok := num(m["minimum"]); ok && f < lo {
			*errs = append(*errs, fmt.Sprintf("%s: %s is below the minimum %v", at, val, lo))
		}
		if hi, ok := num(m["maximum"]); ok && f > hi {
			*errs = append(*errs, fmt.Sprintf("%s: %s is above the maximum %v", at, val, hi))
		}
	case map[string]any:
		s.validateObject(m, val, at, errs, depth)
	case []any:
		if lo, ok := num(m["minItems"]); ok && float64(len(val)) < lo {
			*errs = append(*errs, fmt.Sprintf("%s: %d items, want at least %v", at, len(val), lo))
		}
		if hi, ok := num(m["maxItems"]); ok && float64(len(val)) > hi {
			*errs = append(*errs, fmt.Sprintf("%s: %d items, want at most %v", at, len(val), hi))
		}
		if items, ok := m["items"]; ok {
			for i, it := range val {
				s.validate(items, it, fmt.Sprintf("%s[%d]", at, i), errs, depth+1)
			}
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *Schema) validateString(m map[string]any, val, at string, errs *[]string) {
	if p, ok := m["pattern"].(string); ok {
		if re := s.regexp(p); re != nil && !re.MatchString(val) {
			*errs = append(*errs, fmt.Sprintf("%s: %q does not match %s", at, val, p))
		}
	}
	n := float64(len([]rune(val)))
	if lo, ok := num(m["minLength"]); ok && n < lo {
		*errs = append(*errs, fmt.Sprintf("%s: %q is shorter than %v", at, val, lo))
	}
	if hi, ok := num(m["maxLength"]); ok && n > hi {
		*errs = append(*errs, fmt.Sprintf("%s: %q is longer than %v", at, val, hi))
	}
	switch m["format"] {
	case "uuid":
		if !uuidRE.MatchString(val) {
			*errs = append(*errs, fmt.Sprintf("%s: %q is not a uuid", at, val))
		}
	case "date-time":
		if _, err := time.Parse(time.RFC3339, val); err != nil {
			*errs = append(*errs, fmt.Sprintf("%s: %q is not an RFC 3339 date-time", at, val))
		}
	}
}

func (s *Schema) validateObject(m map[string]any, val map[string]any, at string, errs *[]string, depth int) {
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if name, ok := r.(string); ok {
				if _, present := val[name]; !present {
					*errs = append(*errs, fmt.Sprintf("%s.%s: required property missing", at, name))
				}
			}
		}
	}
	props, _ := m["properties"].(map[string]any)
	patterns, _ := m["patternProperties"].(map[string]any)
	for _, k := range sortedKeys(val) {
		where := at + "." + k
		known := false
		if p, ok := props[k]; ok {
			known = true
			s.validate(p, val[k], where, errs, depth+1)
		}
		for _, pat := range sortedKeys(patterns) {
			re := s.regexp(pat)
			if re == nil || !re.MatchString(k) {
				continue
			}
			known = true
			s.validate(patterns[pat], val[k], where, errs, depth+1)
		}
		if known {
			continue
		}
		switch ap := m["additionalProperties"].(type) {
		case bool:
			if !ap {
				if len(patterns) > 0 {
					*errs = append(*errs, fmt.Sprintf("%s: property name %q does not match %s", at, k,
						strings.Join(sortedKeys(patterns), " or ")))
				} else {
					*errs = append(*errs, fmt.Sprintf("%s: property not allowed", where))
				}
			}
		case map[string]any:
			s.validate(ap, val[k], where, errs, depth+1)
		}
	}
}

// regexp compiles a schema pattern once; nil when RE2 cannot express it.
func (s *Schema) regexp(p string) *regexp.Regexp {
	s.mu.Lock()
	defer s.mu.Unlock()
	re, ok := s.res[p]
	if !ok {
		re, _ = regexp.Compile(p)
		s.res[p] = re
	}
	return re
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func typeAllowed(allowed []string, got string) bool {
	for _, a := range allowed {
		if a == got || (a == "number" && got == "integer") {
			return true
		}
	}
	return false
}

func num(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// decode parses JSON keeping numbers exact, and refuses trailing data.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}
