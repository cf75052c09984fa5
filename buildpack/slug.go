package buildpack

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
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
}

// Pack writes dir as a gzip'd tar whose entries live under ./app/ (SPEC E1),
// streaming to w: nothing is held in memory. .git directories are left out.
func Pack(dir string, w io.Writer) (PackResult, error) {
	return packTar(dir, w, "./app", true, 0)
}

// packTar streams dir as a gzip'd tar with entry names under prefix. Past
// limit compressed bytes (limit > 0) it stops writing to w but keeps
// counting, so an oversized slug is measured without being stored.
func packTar(dir string, w io.Writer, prefix string, skipGit bool, limit int64) (PackResult, error) {
	h := sha256.New()
	cw := &countWriter{w: w, h: h, limit: limit}
	zw, err := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err != nil {
		return PackResult{}, err
	}
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
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
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return PackResult{}, fmt.Errorf("pack %s: %w", filepath.Base(dir), err)
	}
	if err := tw.Close(); err != nil {
		return PackResult{}, fmt.Errorf("pack: %w", err)
	}
	if err := zw.Close(); err != nil {
		return PackResult{}, fmt.Errorf("pack: %w", err)
	}
	if cw.err != nil {
		return PackResult{}, fmt.Errorf("pack: %w", cw.err)
	}
	return PackResult{Size: cw.n, Checksum: "SHA256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

// countWriter counts, hashes and forwards; past limit it only counts.
type countWriter struct {
	w     io.Writer
	h     io.Writer
	limit int64
	n     int64
	err   error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	fwd := p
	if c.limit > 0 {
		switch room := c.limit - c.n; {
		case room <= 0:
			fwd = nil
		case int64(len(p)) > room:
			fwd = p[:room]
		}
	}
	if len(fwd) > 0 {
		if _, err := c.w.Write(fwd); err != nil {
			c.err = err
			return 0, err
		}
		_, _ = c.h.Write(fwd)
	}
	c.n += int64(len(p))
	return len(p), nil
}
