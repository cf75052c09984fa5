package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

// The conditional writes state shared across nodes is built on: Create is
// create-only, Swap a compare-and-swap on the ETag, and of writers racing on
// one key exactly one wins, every time.
var conditionalTests = []struct {
	name string
	fn   func(t *testing.T, s stow.Store, opts Options)
}{
	{"CreateOnlyIfAbsent", testCreate},
	{"SwapOnlyIfUnchanged", testSwap},
	{"RacingCreatesOneWins", testRacingCreates},
	{"RacingSwapsOneWins", testRacingSwaps},
	{"UpdateJSONLosesNothing", testUpdateJSON},
}

func testCreate(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	info, err := s.Create(ctx, "c/key", strings.NewReader("first"))
	if err != nil {
		t.Fatalf("Create of an absent key: %v", err)
	}
	if info.ETag == "" || info.Size != 5 {
		t.Fatalf("Create info = %+v", info)
	}
	if _, err := s.Create(ctx, "c/key", strings.NewReader("second")); !errors.Is(err, stow.ErrConflict) {
		t.Fatalf("Create of an existing key = %v, want ErrConflict", err)
	}
	if b, _ := mustRead(t, s, "c/key"); string(b) != "first" {
		t.Fatalf("after the refused Create the object is %q", b)
	}
	if _, err := s.Create(ctx, "../x", strings.NewReader("x")); !errors.Is(err, stow.ErrBadKey) {
		t.Fatalf("Create of a bad key = %v", err)
	}
	// Deleted keys may be created again.
	if err := s.Delete(ctx, "c/key"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "c/key", strings.NewReader("third")); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
}

func testSwap(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	if _, err := s.Swap(ctx, "c/gone", strings.NewReader("x"), "whatever"); !errors.Is(err, stow.ErrConflict) {
		t.Fatalf("Swap of a missing key = %v, want ErrConflict", err)
	}
	if _, err := s.Stat(ctx, "c/gone"); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("the refused Swap created the key: %v", err)
	}
	v1, err := stow.PutBytes(ctx, s, "c/key", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Swap(ctx, "c/key", strings.NewReader("v2"), v1.ETag)
	if err != nil {
		t.Fatalf("Swap with the current ETag: %v", err)
	}
	if v2.ETag == "" || v2.ETag == v1.ETag {
		t.Fatalf("ETag after Swap = %q (was %q)", v2.ETag, v1.ETag)
	}
	if b, info := mustRead(t, s, "c/key"); string(b) != "v2" || info.ETag != v2.ETag {
		t.Fatalf("after Swap: %q, ETag %q, Swap said %q", b, info.ETag, v2.ETag)
	}
	if _, err := s.Swap(ctx, "c/key", strings.NewReader("stale"), v1.ETag); !errors.Is(err, stow.ErrConflict) {
		t.Fatalf("Swap with a stale ETag = %v, want ErrConflict", err)
	}
	if b, _ := mustRead(t, s, "c/key"); string(b) != "v2" {
		t.Fatalf("after the refused Swap the object is %q", b)
	}
}

const racers, rounds = 8, 20

// race runs write in racers goroutines at once and returns how many won and
// the first error that was neither a win nor ErrConflict.
func race(write func(i int) error) (wins int, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			e := write(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case e == nil:
				wins++
			case errors.Is(e, stow.ErrConflict):
			case err == nil:
				err = e
			}
		})
	}
	close(start)
	wg.Wait()
	return wins, err
}

func testRacingCreates(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	for r := range rounds {
		key := fmt.Sprintf("race/create-%d", r)
		wins, err := race(func(i int) error {
			_, err := s.Create(ctx, key, strings.NewReader(fmt.Sprintf("writer %d", i)))
			return err
		})
		if err != nil || wins != 1 {
			t.Fatalf("round %d: %d of %d racing Creates won (err %v), want exactly 1", r, wins, racers, err)
		}
	}
}

func testRacingSwaps(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	for r := range rounds {
		key := fmt.Sprintf("race/swap-%d", r)
		base, err := stow.PutBytes(ctx, s, key, []byte("base"))
		if err != nil {
			t.Fatal(err)
		}
		var winner string
		var mu sync.Mutex
		wins, err := race(func(i int) error {
			body := fmt.Sprintf("writer %d", i)
			_, err := s.Swap(ctx, key, bytes.NewReader([]byte(body)), base.ETag)
			if err == nil {
				mu.Lock()
				winner = body
				mu.Unlock()
			}
			return err
		})
		if err != nil || wins != 1 {
			t.Fatalf("round %d: %d of %d racing Swaps won (err %v), want exactly 1", r, wins, racers, err)
		}
		if b, _ := mustRead(t, s, key); string(b) != winner {
			t.Fatalf("round %d: object is %q, the winner wrote %q", r, b, winner)
		}
	}
}

func testUpdateJSON(t *testing.T, s stow.Store, _ Options) {
	ctx := context.Background()
	type record struct{ Seen []int }
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := stow.UpdateJSON(ctx, s, "race/record.json", func(r *record, _ bool) error {
				r.Seen = append(r.Seen, i)
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var got record
	if _, err := stow.GetJSON(ctx, s, "race/record.json", &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Seen) != n {
		t.Fatalf("%d concurrent updates left %d entries: %v", n, len(got.Seen), got.Seen)
	}
	// ErrNoChange writes nothing.
	before, _ := s.Stat(ctx, "race/record.json")
	if _, err := stow.UpdateJSON(ctx, s, "race/record.json", func(*record, bool) error { return stow.ErrNoChange }); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Stat(ctx, "race/record.json"); after.ETag != before.ETag {
		t.Fatal("an update that returned ErrNoChange wrote the record")
	}
}
