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

	"github.com/klauspost/compress/gzip"
)

// PackResult describes a packed slug.
type PackResult struct {
	Size     int64  // compressed bytes written
	Checksum string // SHA256:<hex> of the compressed bytes (SPEC E5)
}

// Pack writes dir as a gzip'd tar whose entries live under ./app/ (SPEC E1),
// streaming to w. .git directories are left out.
func Pack(dir string, w io.Writer) (PackResult, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
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
		if d.IsDir() && d.Name() == ".git" && p != dir {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := "./app"
		if rel != "." {
			name = "./app/" + filepath.ToSlash(rel)
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
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		// The file may change size under a misbehaving buildpack's leftover;
		// copy exactly what the header promised.
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return PackResult{}, fmt.Errorf("pack slug: %w", err)
	}
	if err := tw.Close(); err != nil {
		return PackResult{}, fmt.Errorf("pack slug: %w", err)
	}
	if err := zw.Close(); err != nil {
		return PackResult{}, fmt.Errorf("pack slug: %w", err)
	}
	return PackResult{Size: cw.n, Checksum: "SHA256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
