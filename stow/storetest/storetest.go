// Package storetest is the conformance suite every stow.Store backend runs, so
// the local directory and S3 keep the same semantics: round trips, replace,
// delete, listing, key checks, the ErrNotFound mapping and atomic writes
// (DESIGN.md rule 7).
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Options tunes the suite for a backend.
type Options struct {
	// LargeSize is the size of the object the streaming tests write; a backend
	// with a multipart threshold sets it past that threshold. Default 1 MiB.
	LargeSize int64
}

// BadKeys are keys every backend must refuse with stow.ErrBadKey.
var BadKeys = []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/.tmp-1", "..", ".", "a/", "a\\b", "a\x00b"}

// Run runs the suite. newStore returns an empty store for one subtest; the
// subtests run in parallel, each on its own store.
func Run(t *testing.T, newStore func(t *testing.T) stow.Store, opts Options) {
	if opts.LargeSize <= 0 {
		opts.LargeSize = 1 << 20
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s stow.Store, opts Options)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyObject", testEmptyObject},
		{"LargeStreamed", testLargeStreamed},
		{"Replace", testReplace},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"BadKeys", testBadKeys},
		{"FailedPutKeepsOldObject", testFailedPutKeepsOld},
		{"FailedPutCreatesNothing", testFailedPutCreatesNothing},
		{"CancelledPut", testCancelledPut},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	// Every backend runs the conditional writes: Sokoban's state depends on
	// them (DESIGN rule 8).
	tests = append(tests, conditionalTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t), opts)
		})
	}
}

func testRoundTrip(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	const key = "apps/a/slugs/1.tgz"
	put, err := s.Put(ctx, key, bytes.NewBufferString("slug bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if put.Key != key || put.Size != 10 || put.ETag == "" || put.ModTime.IsZero() {
		t.Fatalf("Put info = %+v", put)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != key || st.Size != put.Size || st.ETag != put.ETag || st.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, Put said %+v", st, put)
	}
	b, got := mustRead(t, s, key)
	if string(b) != "slug bytes" || got.Key != key || got.Size != put.Size || got.ETag != put.ETag {
		t.Fatalf("Get = %q %+v, Put said %+v", b, got, put)
	}
	list, err := s.List(ctx, "apps/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Key != key || list[0].Size != put.Size || list[0].ETag != put.ETag {
		t.Fatalf("List = %+v, Put said %+v", list, put)
	}
}

func testEmptyObject(t *testing.T, s stow.Store, _ Options) {
	info, err := s.Put(context.Background(), "empty", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 0 {
		t.Fatalf("Put info = %+v", info)
	}
	b, got := mustRead(t, s, "empty")
	if len(b) != 0 || got.Size != 0 {
		t.Fatalf("Get = %q %+v", b, got)
	}
}

func testLargeStreamed(t *testing.T, s stow.Store, opts Options) {
	ctx := context.Background()
	want := sha256.New()
	// A plain io.Reader: the backend can neither seek nor learn the length.
	info, err := s.Put(ctx, "big/blob", io.TeeReader(NewPattern(opts.LargeSize), want))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != opts.LargeSize {
		t.Fatalf("Put size = %d, want %d", info.Size, opts.LargeSize)
	}
	rc, got, err := s.Get(ctx, "big/blob")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != opts.LargeSize || got.Size != opts.LargeSize || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read %d bytes (info %+v), content differs: %v", n, got, !bytes.Equal(h.Sum(nil), want.Sum(nil)))
	}
}

func testReplace(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	first, err := stow.PutBytes(ctx, s, "k", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := stow.PutBytes(ctx, s, "k", []byte("two, longer"))
	if err != nil {
		t.Fatal(err)
	}
	if second.ETag == first.ETag {
		t.Fatalf("ETag %q did not change when the content was replaced", first.ETag)
	}
	b, got := mustRead(t, s, "k")
	if string(b) != "two, longer" || got.ETag != second.ETag || got.Size != 11 {
		t.Fatalf("after replace Get = %q %+v", b, got)
	}
}

func testNotFound(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	if _, err := stow.PutBytes(ctx, s, "dir/file", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// "dir" is only a prefix of another key, not an object.
	for _, key := range []string{"missing", "dir/missing", "dir"} {
		if _, err := s.Stat(ctx, key); !errors.Is(err, stow.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", key, err)
		}
		rc, _, err := s.Get(ctx, key)
		if !errors.Is(err, stow.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", key, err)
		}
		if rc != nil {
			_ = rc.Close()
			t.Errorf("Get(%q) returned a body with an error", key)
		}
	}
	for _, key := range []string{"missing", "dir/missing"} {
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) of a missing object = %v, want nil", key, err)
		}
	}
	if _, err := s.Stat(ctx, "dir/file"); err != nil {
		t.Fatalf("object lost: %v", err)
	}
}

func testDelete(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	for _, k := range []string{"a/1", "a/2"} {
		if _, err := stow.PutBytes(ctx, s, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "a/1"); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("Stat after Delete = %v", err)
	}
	if err := s.Delete(ctx, "a/1"); err != nil {
		t.Fatalf("second Delete = %v", err)
	}
	if got := keys(t, s, ""); !slices.Equal(got, []string{"a/2"}) {
		t.Fatalf("List after Delete = %q", got)
	}
}

func testList(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	// Put out of order so the backend has to sort.
	for _, k := range []string{"b/5", "a/sub/3", "ab/4", "a/2", "a/1"} {
		if _, err := stow.PutBytes(ctx, s, k, []byte("content of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/1", "a/2", "a/sub/3", "ab/4", "b/5"}},
		{"a/", []string{"a/1", "a/2", "a/sub/3"}},
		{"a", []string{"a/1", "a/2", "a/sub/3", "ab/4"}}, // a string prefix, not a directory
		{"a/sub/", []string{"a/sub/3"}},
		{"a/1", []string{"a/1"}},
		{"zzz/", nil},
	} {
		if got := keys(t, s, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	list, err := s.List(ctx, "b/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Size != int64(len("content of b/5")) || list[0].ETag == "" || list[0].ModTime.IsZero() {
		t.Fatalf("List(b/) = %+v", list)
	}
}

func testBadKeys(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	for _, key := range BadKeys {
		if _, err := stow.PutBytes(ctx, s, key, []byte("x")); !errors.Is(err, stow.ErrBadKey) {
			t.Errorf("Put(%q) = %v, want ErrBadKey", key, err)
		}
		if rc, _, err := s.Get(ctx, key); !errors.Is(err, stow.ErrBadKey) {
			if rc != nil {
				_ = rc.Close()
			}
			t.Errorf("Get(%q) = %v, want ErrBadKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, stow.ErrBadKey) {
			t.Errorf("Stat(%q) = %v, want ErrBadKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, stow.ErrBadKey) {
			t.Errorf("Delete(%q) = %v, want ErrBadKey", key, err)
		}
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Fatalf("bad keys left objects: %q", got)
	}
}

// A Put whose source breaks must leave the previous object whole (DESIGN.md
// rule 7, SPEC F11: "the stowed repository is the previous one").
func testFailedPutKeepsOld(t *testing.T, s stow.Store, opts Options) {
	ctx := context.Background()
	old, err := stow.PutBytes(ctx, s, "apps/a/repo", []byte("old repo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []int64{0, 100, opts.LargeSize} {
		_, err := s.Put(ctx, "apps/a/repo", &BrokenReader{R: NewPattern(after)})
		if !errors.Is(err, ErrSourceBroke) {
			t.Fatalf("Put from a reader that broke after %d bytes = %v, want ErrSourceBroke", after, err)
		}
		b, got := mustRead(t, s, "apps/a/repo")
		if string(b) != "old repo" || got.ETag != old.ETag {
			t.Fatalf("after failed put (%d bytes) object = %q %+v, want the old one %+v", after, b, got, old)
		}
	}
	if got := keys(t, s, ""); !slices.Equal(got, []string{"apps/a/repo"}) {
		t.Fatalf("List after failed puts = %q", got)
	}
}

func testFailedPutCreatesNothing(t *testing.T, s stow.Store, opts Options) {
	ctx := context.Background()
	if _, err := s.Put(ctx, "new/obj", &BrokenReader{R: NewPattern(opts.LargeSize)}); !errors.Is(err, ErrSourceBroke) {
		t.Fatalf("Put = %v, want ErrSourceBroke", err)
	}
	if _, err := s.Stat(ctx, "new/obj"); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("Stat after failed Put = %v, want ErrNotFound", err)
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Fatalf("List after failed Put = %q", got)
	}
}

func testCancelledPut(t *testing.T, s stow.Store, _ Options) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "x", bytes.NewBufferString("data")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Stat(context.Background(), "x"); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("object exists after cancelled Put: %v", err)
	}
}

func testConcurrentPuts(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var want []string
	for i := range 8 {
		key := fmt.Sprintf("c/%d", i)
		want = append(want, key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := stow.PutBytes(ctx, s, key, []byte(key)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := keys(t, s, "c/"); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	for _, key := range want {
		if b, _ := mustRead(t, s, key); string(b) != key {
			t.Fatalf("%s = %q", key, b)
		}
	}
}

// ErrSourceBroke is what BrokenReader fails with.
var ErrSourceBroke = errors.New("storetest: source broke")

// BrokenReader yields R's bytes, then fails with ErrSourceBroke instead of EOF.
type BrokenReader struct{ R io.Reader }

func (b *BrokenReader) Read(p []byte) (int, error) {
	n, err := b.R.Read(p)
	if errors.Is(err, io.EOF) {
		return n, ErrSourceBroke
	}
	return n, err
}

// NewPattern returns a reader of n deterministic bytes that is neither a
// Seeker nor knows its length, like a pipe from tar.
func NewPattern(n int64) io.Reader {
	return io.LimitReader(&pattern{}, n)
}

type pattern struct{ i uint32 }

func (p *pattern) Read(b []byte) (int, error) {
	for j := range b {
		// A cheap LCG: bytes vary, so a shifted or repeated part changes the hash.
		p.i = p.i*1664525 + 1013904223
		b[j] = byte(p.i >> 24)
	}
	return len(b), nil
}

func mustRead(t *testing.T, s stow.Store, key string) ([]byte, stow.Info) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if int64(len(b)) != info.Size {
		t.Fatalf("Get(%q) read %d bytes, info says %d", key, len(b), info.Size)
	}
	return b, info
}

func keys(t *testing.T, s stow.Store, prefix string) []string {
	t.Helper()
	list, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	var out []string
	for _, i := range list {
		out = append(out, i.Key)
	}
	return out
}
