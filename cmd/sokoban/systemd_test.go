package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// journalFile returns a file and the JOURNAL_STREAM value that names it.
func journalFile(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func logLines(t *testing.T, f *os.File, format, stream string) []string {
	t.Helper()
	getenv := func(k string) string {
		if k == "JOURNAL_STREAM" {
			return stream
		}
		return ""
	}
	log, err := newLogger(f, format, "debug", getenv)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("d", "k", 1)
	log.Info("i", "conn", "abc")
	log.Warn("w")
	log.Error("e")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// Under journald (JOURNAL_STREAM names stderr) lines carry no time, which the
// journal adds, and start with their syslog priority.
func TestJournalLogLines(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"text": {`<7>level=DEBUG msg=d k=1`, `<6>level=INFO msg=i conn=abc`, `<4>level=WARN msg=w`, `<3>level=ERROR msg=e`},
		"json": {`<7>{"level":"DEBUG","msg":"d","k":1}`, `<6>{"level":"INFO","msg":"i","conn":"abc"}`, `<4>{"level":"WARN","msg":"w"}`, `<3>{"level":"ERROR","msg":"e"}`},
	}
	for format, lines := range want {
		f, stream := journalFile(t)
		got := logLines(t, f, format, stream)
		if strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", format, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}
}

// Anywhere else, or when JOURNAL_STREAM names another file (a child whose
// stderr was redirected), lines keep their time and have no prefix.
func TestLogLinesOutsideJournal(t *testing.T) {
	t.Parallel()
	other, _ := journalFile(t)
	_, otherStream := journalFile(t)
	for name, stream := range map[string]string{"unset": "", "other file": otherStream, "garbage": "x:y"} {
		got := logLines(t, other, "text", stream)
		for _, l := range got {
			if !regexp.MustCompile(`^time=\S+ level=`).MatchString(l) {
				t.Errorf("%s: %q", name, l)
			}
		}
		if err := other.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
	}
}
