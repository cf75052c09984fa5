package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sokoban-deploy/sokoban/stow"
)

// storeFlags are shared by every subcommand that reads durable state.
type storeFlags struct {
	data       string
	store      string
	s3Endpoint string
	s3Region   string
	s3Path     bool
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.data, "data", "/var/lib/sokoban", "data directory (node-local state; the default store lives under it)")
	fs.StringVar(&s.store, "store", "", "durable store: file://DIR or s3://BUCKET/PREFIX (default: DATA/store)")
	fs.StringVar(&s.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible stores (MinIO, SeaweedFS)")
	fs.StringVar(&s.s3Region, "s3-region", "", "S3 region (default: the SDK's)")
	fs.BoolVar(&s.s3Path, "s3-path-style", false, "use path-style S3 addressing")
}

// dataDir returns the absolute data directory, created with mode 0700.
func (s *storeFlags) dataDir() (string, error) {
	abs, err := filepath.Abs(s.data)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	return abs, nil
}

func (s *storeFlags) open(ctx context.Context, log *slog.Logger) (stow.Store, string, error) {
	data, err := s.dataDir()
	if err != nil {
		return nil, "", err
	}
	switch {
	case s.store == "":
		st, err := stow.NewLocal(filepath.Join(data, "store"))
		return st, "file://" + filepath.Join(data, "store"), err
	case strings.HasPrefix(s.store, "file://"):
		st, err := stow.NewLocal(strings.TrimPrefix(s.store, "file://"))
		return st, s.store, err
	case strings.HasPrefix(s.store, "s3://"):
		bucket, prefix, err := stow.ParseURL(s.store)
		if err != nil {
			return nil, "", err
		}
		st, err := stow.NewS3(ctx, stow.S3Config{Bucket: bucket, Prefix: prefix, Endpoint: s.s3Endpoint,
			Region: s.s3Region, PathStyle: s.s3Path, Logger: log})
		if err != nil {
			return nil, "", err
		}
		return st, s.store, nil
	}
	return nil, "", errors.New("--store must be file://DIR or s3://BUCKET/PREFIX")
}
