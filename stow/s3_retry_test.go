package stow_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

// dropFirstAnswer lets the first conditional PUT to key reach the server,
// then cuts the connection before the client sees the answer, as a reset
// load balancer or a timeout would.
func dropFirstAnswer(key string) func(w http.ResponseWriter, r *http.Request, next http.Handler) {
	var dropped atomic.Bool
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		conditional := r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != ""
		if r.Method != http.MethodPut || !conditional || !strings.HasSuffix(r.URL.Path, "/"+key) || dropped.Swap(true) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(httptest.NewRecorder(), r) // stored; the answer is lost
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
}

// The story: a node Creates a record (a lease, an app), the PUT lands, and
// the connection drops before the 200 arrives. The SDK sends the PUT again;
// the key now exists, so the server answers 412. Reported as ErrConflict,
// the node would believe another writer holds the record it wrote itself
// and, in UpdateJSON, apply its change a second time on top of its own.
// A retried conditional write that finds its own bytes stored succeeded.
func TestS3ConditionalRetryFindsOwnWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Create", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		f.wrap = dropFirstAnswer("rec")
		s := newS3(t, testConfig(f.url, ""))
		info, err := s.Create(ctx, "rec", strings.NewReader("mine"))
		if err != nil {
			t.Fatalf("Create whose first answer was lost = %v, want success", err)
		}
		got, st, err := stow.ReadAll(ctx, s, "rec")
		if err != nil || string(got) != "mine" || st.ETag != info.ETag {
			t.Fatalf("stored %q (%+v, %v); Create said %+v", got, st, err, info)
		}
	})

	t.Run("Swap", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		s := newS3(t, testConfig(f.url, ""))
		old, err := stow.PutBytes(ctx, s, "rec", []byte("old"))
		if err != nil {
			t.Fatal(err)
		}
		f.wrap = dropFirstAnswer("rec")
		info, err := s.Swap(ctx, "rec", strings.NewReader("new"), old.ETag)
		if err != nil {
			t.Fatalf("Swap whose first answer was lost = %v, want success", err)
		}
		got, st, err := stow.ReadAll(ctx, s, "rec")
		if err != nil || string(got) != "new" || st.ETag != info.ETag {
			t.Fatalf("stored %q (%+v, %v); Swap said %+v", got, st, err, info)
		}
	})

	// Someone else's bytes behind the 412 are still a lost race.
	t.Run("OtherWriter", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		s := newS3(t, testConfig(f.url, ""))
		if _, err := stow.PutBytes(ctx, s, "rec", []byte("theirs")); err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		f.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if r.Method == http.MethodPut && calls.Add(1) == 1 {
				conn, _, _ := http.NewResponseController(w).Hijack()
				_ = conn.Close() // lost before it reached the store
				return
			}
			next.ServeHTTP(w, r)
		}
		_, err := s.Create(ctx, "rec", bytes.NewBufferString("mine"))
		if !errors.Is(err, stow.ErrConflict) {
			t.Fatalf("retried Create over another writer's record = %v, want ErrConflict", err)
		}
	})
}
