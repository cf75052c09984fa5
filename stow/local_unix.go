package stow

import (
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

const syscallENOTDIR = syscall.ENOTDIR

// inode makes the ETag change even when a rename lands within the same
// nanosecond and size as the previous object.
func inode(st fs.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return "-" + strconv.FormatUint(s.Ino, 36)
	}
	return ""
}

// lockDir takes an exclusive flock on dir, the lock every writer of the
// directory's objects holds while it moves one into place. flock works
// between processes too, so two nodes sharing a data directory are covered.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		_ = d.Close()
	}, nil
}
