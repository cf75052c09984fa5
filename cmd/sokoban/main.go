package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `Sokoban: git push to deploy, over SSH.

Usage:
  sokoban serve [flags]                          run the server (see sokoban serve -h)
  sokoban keys add [--admin] USER KEYFILE|-      register a public key
  sokoban keys add --heroku-token-file FILE KEYFILE|-
                                                 Heroku mode: link a key to its Heroku account
  sokoban keys list [--json]                     list registered keys
  sokoban keys remove FINGERPRINT                remove a key
  sokoban build [--buildpack URL]... [--env-dir DIR] [--cache DIR] [-o slug.tgz] DIR
                                                 run the build pipeline on a directory
  sokoban version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, getenv)
	case "keys":
		return keysCmd(ctx, args[1:], stdin, stdout, stderr, getenv)
	case "build":
		return buildCmd(ctx, args[1:], stdout, stderr, getenv)
	case "hook":
		return hookCmd(ctx, args[1:], stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sokoban", Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sokoban: unknown command %q\n\n%s", args[0], usage)
	return 2
}
