package stow

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalPutGetListDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PutBytes(ctx, s, "apps/a/slugs/1.tgz", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := PutBytes(ctx, s, "apps/b/x", []byte("two")); err != nil {
		t.Fatal(err)
	}
	b, info, err := ReadAll(ctx, s, "apps/a/slugs/1.tgz")
	if err != nil || string(b) != "one" || info.Size != 3 {
		t.Fatalf("ReadAll = %q, %+v, %v", b, info, err)
	}
	list, err := s.List(ctx, "apps/a/")
	if err != nil || len(list) != 1 || list[0].Key != "apps/a/slugs/1.tgz" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Delete(ctx, "apps/a/slugs/1.tgz"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "apps/a/slugs/1.tgz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after delete: %v", err)
	}
	if err := s.Delete(ctx, "apps/a/slugs/1.tgz"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestLocalRejectsBadKeys(t *testing.T) {
	t.Parallel()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/.tmp-1", "..", "a\\b"} {
		if _, err := PutBytes(context.Background(), s, key, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("Put(%q) = %v, want ErrBadKey", key, err)
		}
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, "partial"), nil
	}
	return 0, errors.New("source broke")
}

// A failed write must leave the previous object intact and no temp file behind.
func TestLocalPutIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PutBytes(ctx, s, "k/obj", []byte("old")); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Stat(ctx, "k/obj")
	if _, err := s.Put(ctx, "k/obj", &failingReader{n: 3}); err == nil {
		t.Fatal("Put from a broken reader succeeded")
	}
	b, after, err := ReadAll(ctx, s, "k/obj")
	if err != nil || string(b) != "old" || after.ETag != before.ETag {
		t.Fatalf("object after failed put = %q, %v", b, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "k"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
	if _, err := PutBytes(ctx, s, "k/obj", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if now, _ := s.Stat(ctx, "k/obj"); now.ETag == before.ETag {
		t.Fatal("ETag did not change after replacing the object")
	}
}

func TestLocalPutStopsOnCancel(t *testing.T) {
	t.Parallel()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "x", strings.NewReader("data")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with cancelled ctx = %v", err)
	}
	if _, err := s.Stat(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("object exists after cancelled put: %v", err)
	}
	var _ io.Reader = ctxReader{}
}
