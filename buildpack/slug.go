package buildpack

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/klauspost/compress/gzip"
)

// PackResult describes a packed slug.
type PackResult struct {
	Size     int64  // compressed bytes written
	Checksum string // SHA256:<hex> of the compressed bytes (SPEC E5)
	// Read is how many bytes of file contents were read; on an error, how
	// many were read before packing stopped.
	Read int64
}

// packLimits bound what packing a directory may cost; zero means no bound.
type packLimits struct {
	packed int64 // compressed bytes written
	// files bounds the apparent sizes of the regular files, summed, before
	// any is read: a sparse file (`truncate -s 16T`) takes no disk but
	// would take hours of CPU to gzip, all of it zeros.
	files int64
}

// filesBound is how much file content a slug or cache bound of limit
// compressed bytes lets packing read: gzip rarely does better than 4:1 on
// what buildpacks leave (binaries, already-compressed archives).
func filesBound(limit int64) int64 { return 4 * limit }

// Pack writes dir as a gzip'd tar whose entries live under ./app/ (SPEC E1),
// streaming to w: nothing is held in memory. .git directories are left out.
func Pack(dir string, w io.Writer) (PackResult, error) {
	return packTar(context.Background(), dir, w, "./app", true, packLimits{})
}

// packTar streams dir as a gzip'd tar with entry names under prefix. It
// stops with a *PackLimitError as soon as the compressed output passes
// lim.packed or the files walked add up to more than lim.files, and with
// ctx's error when ctx ends: what a buildpack leaves behind must not cost
// the server more than the bound, however it is shaped.
func packTar(ctx context.Context, dir string, w io.Writer, prefix string, skipGit bool, lim packLimits) (PackResult, error) {
	h := sha256.New()
	cw := &countWriter{w: w, h: h, limit: lim.packed}
	zw, err := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err != nil {
		return PackResult{}, err
	}
	tw := tar.NewWriter(zw)
	var apparent, read int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if skipGit && d.IsDir() && d.Name() == ".git" && p != dir {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := prefix
		if rel != "." {
			name = prefix + "/" + filepath.ToSlash(rel)
		}
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return nil // sockets, devices, fifos have no place in a slug
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if !info.Mode().IsRegular() {
			return tw.WriteHeader(hdr)
		}
		if apparent += hdr.Size; lim.files > 0 && apparent > lim.files {
			return &PackLimitError{Files: lim.files}
		}
		// Never follow a symlink swapped in after the walk looked: the slug
		// must hold the build directory, not what a link points to.
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		// The file may change size under a misbehaving buildpack's leftover;
		// copy exactly what the header promised.
		n, err := io.CopyN(tw, &ctxReader{ctx: ctx, r: f}, hdr.Size)
		read += n
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err == nil {
		if err = tw.Close(); err == nil {
			err = zw.Close()
		}
	}
	switch {
	case cw.over:
		return PackResult{Read: read}, &PackLimitError{Packed: lim.packed}
	case ctx.Err() != nil:
		return PackResult{Read: read}, ctx.Err()
	case errors.Is(err, ErrPackTooLarge):
		return PackResult{Read: read}, err
	case err != nil:
		return PackResult{Read: read}, fmt.Errorf("pack %s: %w", filepath.Base(dir), err)
	}
	return PackResult{Size: cw.n, Checksum: "SHA256:" + hex.EncodeToString(h.Sum(nil)), Read: read}, nil
}

// PackLimitError is a directory that packs to more than its bound allows.
// It is an ErrPackTooLarge.
type PackLimitError struct {
	Packed int64 // the compressed output passed this many bytes
	Files  int64 // the files walked added up to more than this many bytes
}

func (e *PackLimitError) Error() string {
	if e.Files > 0 {
		return ErrPackTooLarge.Error() + ": files add up to more than " + Limit(e.Files)
	}
	return ErrPackTooLarge.Error() + ": more than " + Limit(e.Packed) + " compressed"
}

// Is makes a PackLimitError match ErrPackTooLarge.
func (e *PackLimitError) Is(target error) bool { return target == ErrPackTooLarge }

// ctxReader fails once ctx ends, so a cancelled build stops packing within
// one read rather than after the file.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// countWriter counts, hashes and forwards at most limit bytes (limit > 0);
// the write that would pass limit fails, which stops the packing: nothing
// past the bound is stored or even compressed.
type countWriter struct {
	w     io.Writer
	h     io.Writer
	limit int64
	n     int64
	over  bool
	err   error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.limit > 0 && c.n+int64(len(p)) > c.limit {
		c.over, c.err = true, errPackedOver
		return 0, c.err
	}
	if _, err := c.w.Write(p); err != nil {
		c.err = err
		return 0, err
	}
	_, _ = c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}
