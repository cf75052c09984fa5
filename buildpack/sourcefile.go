package buildpack

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// MaxSourceFile bounds what the server reads of a file in the build
// directory (.buildpacks, Procfile, .slugignore): the pusher and every
// buildpack control those files.
const MaxSourceFile = 1 << 20

// readSourceFile reads the file name at the top of dir, a directory whose
// content a pusher or a buildpack controls (issue 10 item 1). It never
// follows a symlink (a Procfile pointing at the host key would otherwise be
// read by the server and shown to the pusher), reads only regular files (not
// a FIFO or a device, which would block or never end) and at most max bytes.
// A missing file is (nil, nil); every other refusal wraps ErrSourceFile and
// says why in words for the pusher.
func readSourceFile(dir, name string, max int64) ([]byte, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }()
	// O_NONBLOCK: opening a FIFO must not wait for a writer; fstat below
	// refuses it anyway.
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	fd, err := unix.Openat2(int(d.Fd()), name, &unix.OpenHow{
		Flags:   uint64(flags),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// Kernels before 5.6 (or seccomp filters) lack openat2; name is a
		// single component, so O_NOFOLLOW covers it.
		fd, err = unix.Openat(int(d.Fd()), name, flags, 0)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%w: %s is a symlink; the server reads only regular files", ErrSourceFile, name)
	case err != nil:
		return nil, fmt.Errorf("%w: %s could not be opened: %v", ErrSourceFile, name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSourceFile, name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrSourceFile, name)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %s is larger than %s", ErrSourceFile, name, Limit(max))
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSourceFile, name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %s", ErrSourceFile, name, Limit(max))
	}
	return data, nil
}
