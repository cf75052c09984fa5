package buildpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/gzip"
)

// extractLimits bound what an archive may unpack to; zero means no bound.
type extractLimits struct {
	maxBytes   int64 // file contents, summed
	maxEntries int
}

// untar unpacks a tar stream into dir. It refuses entries that would land
// outside dir, never writes through a symlink (a symlink entry followed by
// "link/file" cannot reach outside), drops setuid bits and device files, and
// stops at lim. Extracting a buildpack or a build cache must not be a way to
// write anywhere on the server.
func untar(r io.Reader, dir string, lim extractLimits) error {
	tr := tar.NewReader(r)
	var total int64
	entries := 0
	// Directories on the way to an entry that are known to be real
	// directories: checking each entry's parents once per entry, not per
	// level, keeps a deep tree linear (a 1,000-deep chain otherwise costs
	// half a million lstat calls per file).
	dirs := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrArchive, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader || hdr.Typeflag == tar.TypeXHeader {
			continue
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		if entries++; lim.maxEntries > 0 && entries > lim.maxEntries {
			return &LimitError{Reason: fmt.Sprintf("more than %d files and directories", lim.maxEntries)}
		}
		if err := checkedParents(dir, name, dirs); err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := fs.FileMode(hdr.Mode).Perm() // no setuid, setgid or sticky bits
		switch hdr.Typeflag {
		case tar.TypeDir:
			st, err := os.Lstat(target)
			switch {
			case err == nil && st.IsDir():
			case err == nil:
				return fmt.Errorf("%w: %q is both a file and a directory", ErrArchive, hdr.Name)
			default:
				if err := os.Mkdir(target, mode|0o700); err != nil {
					return err
				}
			}
		case tar.TypeReg, tar.TypeLink:
			budget := int64(-1)
			if lim.maxBytes > 0 {
				budget = lim.maxBytes - total
			}
			n, err := writeEntry(tr, hdr, dir, target, mode, budget)
			total += n
			if errors.Is(err, errTooBig) {
				return &LimitError{Reason: "more than " + Limit(lim.maxBytes) + " of file contents"}
			}
			if err != nil {
				return err
			}
			_ = os.Chtimes(target, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := replaceable(target); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			// Devices, fifos and the like have no place in a buildpack or cache.
		}
	}
}

// writeEntry writes a regular file (or a hard link's copy) at target.
func writeEntry(tr io.Reader, hdr *tar.Header, dir, target string, mode fs.FileMode, budget int64) (int64, error) {
	src := tr
	if hdr.Typeflag == tar.TypeLink {
		link, err := openLinkTarget(dir, hdr.Linkname)
		if err != nil {
			return 0, err
		}
		defer func() { _ = link.Close() }()
		src = link
	}
	if err := replaceable(target); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode|0o600)
	if err != nil {
		return 0, err
	}
	n, err := copyBounded(f, src, budget)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// entryName cleans an archive entry's name and refuses ones that climb out.
func entryName(raw string) (string, error) {
	name := path.Clean(strings.TrimPrefix(raw, "./"))
	if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("%w: entry %q escapes the directory", ErrArchive, raw)
	}
	return name, nil
}

// replaceable removes what sits at target unless it is a directory, so a new
// entry never writes through an older symlink entry.
func replaceable(target string) error {
	st, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%w: %s is both a directory and a file", ErrArchive, filepath.Base(target))
	}
	return os.Remove(target)
}

// openLinkTarget opens a hard link's target, which must be a regular file
// already unpacked inside dir.
func openLinkTarget(dir, link string) (*os.File, error) {
	name, err := entryName(link)
	if err != nil {
		return nil, err
	}
	if err := noSymlinkParents(dir, name); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(name)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: hard link to %q: %v", ErrArchive, link, rootCause(err))
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: hard link to %q is not a file", ErrArchive, link)
	}
	return f, nil
}

// checkedParents is noSymlinkParents that remembers, in dirs, the parents it
// found to be directories; untar never turns a directory into anything else
// (replaceable refuses), so what it remembers stays true.
func checkedParents(dir, name string, dirs map[string]bool) error {
	parent := path.Dir(name)
	if parent == "." || dirs[parent] {
		return nil
	}
	// The nearest remembered ancestor: only the levels below it are new.
	start := 0
	for p := path.Dir(parent); p != "."; p = path.Dir(p) {
		if dirs[p] {
			start = len(p) + 1
			break
		}
	}
	cur := filepath.Join(dir, filepath.FromSlash(parent[:max(start-1, 0)]))
	for _, part := range strings.Split(parent[start:], "/") {
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created below as a directory by MkdirAll; checked again next time
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%w: entry %q goes through a symlink or file", ErrArchive, name)
		}
	}
	dirs[parent] = true
	for p := path.Dir(parent); p != "." && !dirs[p]; p = path.Dir(p) {
		dirs[p] = true
	}
	return nil
}

// noSymlinkParents checks that no directory on the way to name is a symlink.
func noSymlinkParents(dir, name string) error {
	parts := strings.Split(name, "/")
	cur := dir
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		st, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%w: entry %q goes through a symlink or file", ErrArchive, name)
		}
	}
	return nil
}

var errTooBig = errors.New("too big")

// copyBounded copies at most budget bytes (budget < 0: no bound) and fails
// with errTooBig when src has more.
func copyBounded(dst io.Writer, src io.Reader, budget int64) (int64, error) {
	if budget < 0 {
		return io.Copy(dst, src)
	}
	n, err := io.Copy(dst, io.LimitReader(src, budget+1))
	if err == nil && n > budget {
		return n, errTooBig
	}
	return n, err
}

// PackCache writes dir (a build's CACHE_DIR) as a gzip'd tar to w,
// streaming. It stops with a *PackLimitError once the output passes
// maxBytes or the files walked add up to more than filesBound(maxBytes)
// (maxBytes <= 0: no bound), and with ctx's error when ctx ends.
func PackCache(ctx context.Context, dir string, w io.Writer, maxBytes int64) error {
	lim := packLimits{}
	if maxBytes > 0 {
		lim = packLimits{packed: maxBytes, files: filesBound(maxBytes)}
	}
	_, err := packTar(ctx, dir, w, ".", false, lim)
	return err
}

// UnpackCache fills dir from a stream PackCache wrote, with the same care as a
// downloaded buildpack: nothing lands outside dir.
func UnpackCache(r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := untar(zr, dir, extractLimits{}); err != nil {
		return err
	}
	// Read to the end so a truncated stream is noticed by gzip's checksum.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	return zr.Close()
}

// unpackBuildpack extracts a gzip'd tar buildpack into dst (which must not
// exist). bin/ may sit at the archive's top or inside its one top-level
// directory, as in GitHub's archives (DESIGN "Tarball buildpacks").
func unpackBuildpack(r io.Reader, dst string, maxBytes int64) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip'd tarball: %v", ErrArchive, err)
	}
	raw := dst + ".raw"
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(raw) }()
	if err := untar(zr, raw, extractLimits{maxBytes: maxBytes, maxEntries: 200_000}); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	root := raw
	if !isDir(filepath.Join(raw, "bin")) {
		entries, err := os.ReadDir(raw)
		if err != nil {
			return err
		}
		if len(entries) != 1 || !entries[0].IsDir() || !isDir(filepath.Join(raw, entries[0].Name(), "bin")) {
			return fmt.Errorf("%w: no bin/ at the top of the archive or in its one top-level directory", ErrArchive)
		}
		root = filepath.Join(raw, entries[0].Name())
	}
	return os.Rename(root, dst)
}

// isDir reports whether p is a directory, without following a symlink.
func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

// Untar unpacks a plain tar stream into dir with the same care as a buildpack
// archive: nothing lands outside dir, nothing is written through a symlink.
// The receiver uses it for the pushed commit (`git archive`).
func Untar(r io.Reader, dir string) error { return untar(r, dir, extractLimits{}) }

// UntarLimited is Untar that stops with a *LimitError once the archive's
// file contents pass maxBytes or its entries pass maxEntries (0: no bound).
// A pushed commit is exported this way: a tree of ten identical subtrees ten
// levels deep is a 56 KB pack that would otherwise unpack to gigabytes.
func UntarLimited(r io.Reader, dir string, maxBytes int64, maxEntries int) error {
	return untar(r, dir, extractLimits{maxBytes: maxBytes, maxEntries: maxEntries})
}

// LimitError is an archive that unpacks to more than its bound allows. It
// is an ErrArchive.
type LimitError struct {
	Reason string // "more than 1G of file contents", for the user
}

func (e *LimitError) Error() string { return ErrArchive.Error() + ": unpacks to " + e.Reason }

// Is makes a LimitError match ErrArchive.
func (e *LimitError) Is(target error) bool { return target == ErrArchive }
