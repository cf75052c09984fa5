package receiver

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// countingReader counts what was read from it.
type countingReader struct {
	r *strings.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func refLines(n int, name string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s %s refs/heads/%s-%d\n", strings.Repeat("0", 40), strings.Repeat("a", 40), name, i)
	}
	return b.String()
}

// Issue 10 item 3: the hook reads every ref line, however many, and reports
// a push past the bounds instead of keeping its first 2 MiB (which let
// `main` after 10,485 padding branches skip every check).
func TestReadRefLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", 300)
	for _, c := range []struct {
		name    string
		in      string
		tooMany bool
	}{
		{"few", refLines(3, "x"), false},
		{"at the bound", refLines(MaxRefUpdates, "x"), false},
		{"one past the bound", refLines(MaxRefUpdates+1, "x"), true},
		{"past 2 MiB, under the bounds", refLines(9000, long), false},
		{"past the byte bound", refLines(MaxRefUpdates, strings.Repeat("q", maxRefBytes/MaxRefUpdates)), true},
		{"no final newline", strings.TrimSuffix(refLines(2, "x"), "\n"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := &countingReader{r: strings.NewReader(c.in)}
			refs, tooMany, err := readRefLines(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.n != len(c.in) {
				t.Fatalf("read %d of %d bytes: git would be cut off", r.n, len(c.in))
			}
			if tooMany != c.tooMany {
				t.Fatalf("tooMany = %v, want %v", tooMany, c.tooMany)
			}
			if !c.tooMany && !bytes.Equal(refs, []byte(c.in)) {
				t.Fatalf("kept %d of %d bytes", len(refs), len(c.in))
			}
			if c.tooMany && len(refs) != 0 {
				t.Fatalf("kept %d bytes of a refused push", len(refs))
			}
			if !c.tooMany {
				updates, err := parseRefs(string(refs))
				lines := strings.Count(strings.TrimSuffix(c.in, "\n"), "\n") + 1
				if err != nil || len(updates) != lines {
					t.Fatalf("parsed %d updates, err %v", len(updates), err)
				}
			}
		})
	}
	if _, err := parseRefs(refLines(MaxRefUpdates+1, "x")); err == nil {
		t.Fatal("parseRefs took more than MaxRefUpdates")
	}
}
