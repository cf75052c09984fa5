package main

import (
	"context"
	"io"
	"os"

	"github.com/sokoban-deploy/sokoban/receiver"
)

// hookCmd is called by git receive-pack as the pre-receive hook.
func hookCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "pre-receive" {
		return fail(stderr, "usage: sokoban hook pre-receive (run by git, not by people)")
	}
	return receiver.RunHook(ctx, os.Environ(), stdin, stdout, stderr)
}
