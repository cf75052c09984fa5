package stow

import (
	"io/fs"
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
