package stow_test

import (
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
	"github.com/sokoban-deploy/sokoban/stow/storetest"
)

// The local store passes the same suite as S3 (see s3_test.go), so callers can
// rely on one set of semantics whichever --store is configured.
func TestLocalConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) stow.Store {
		s, err := stow.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{})
}
