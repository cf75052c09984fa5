package receiver

import (
	"fmt"
	"io"
	"strings"
)

// maxPktPayload keeps an ERR line inside one pkt-line.
const maxPktPayload = 65516 - len("ERR \n")

// RefuseGit writes msg as a git ERR pkt-line: the only way to refuse a git
// command before receive-pack or upload-pack has started (DESIGN rule 2). The
// client prints "fatal: remote error: msg".
func RefuseGit(w io.Writer, msg string) error {
	msg = strings.ReplaceAll(strings.TrimSpace(msg), "\n", " ")
	if len(msg) > maxPktPayload {
		msg = msg[:maxPktPayload]
	}
	_, err := fmt.Fprintf(w, "%04xERR %s\n", len(msg)+len("ERR \n")+4, msg)
	return err
}
