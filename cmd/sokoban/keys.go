package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/sokoban-deploy/sokoban/keys"
)

func keysCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		return fail(stderr, "usage: sokoban keys add|list|remove ... (see sokoban help)")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("keys "+sub, stderr)
	var sf storeFlags
	sf.register(fs)
	admin := fs.Bool("admin", false, "keys add: give the user the admin role")
	asJSON := fs.Bool("json", false, "keys list: print JSON")
	var hk herokuKeyFlags
	hk.register(fs)
	if err := parseFlags(fs, args, getenv); err != nil {
		return 2
	}
	st, _, err := sf.open(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(stderr, "%v", err)
	}
	store := keys.NewStore(st, 0)
	rest := fs.Args()
	switch sub {
	case "add":
		if hk.tokenFile != "" {
			return hk.add(ctx, st, store, *admin, rest, stdin, stdout, stderr)
		}
		if len(rest) != 2 {
			return fail(stderr, "usage: sokoban keys add [--admin] USER KEYFILE|-")
		}
		data, err := readKeyArg(rest[1], stdin)
		if err != nil {
			return fail(stderr, "read key: %v", err)
		}
		pk, comment, err := keys.ParsePublicKey(data)
		if err != nil {
			return fail(stderr, "%v (expected one public key, as in ~/.ssh/id_ed25519.pub)", err)
		}
		role := keys.RoleUser
		if *admin {
			role = keys.RoleAdmin
		}
		k, err := store.Add(ctx, rest[0], role, pk, comment)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		fmt.Fprintf(stdout, "added %s key %s for %s (%s)\n", k.Type(), k.Fingerprint, k.User, k.Role)
		return 0
	case "list":
		if len(rest) != 0 {
			return fail(stderr, "usage: sokoban keys list [--json]")
		}
		list, err := store.List(ctx)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		return printKeys(stdout, list, *asJSON)
	case "remove":
		if len(rest) != 1 {
			return fail(stderr, "usage: sokoban keys remove FINGERPRINT")
		}
		k, err := store.Remove(ctx, rest[0])
		if err != nil {
			return fail(stderr, "%v", err)
		}
		fmt.Fprintf(stdout, "removed %s key %s of %s\n", k.Type(), k.Fingerprint, k.User)
		return 0
	}
	return fail(stderr, "unknown keys command %q (add, list, remove)", sub)
}

// KeyView is how keys are listed, here and over SSH.
type KeyView struct {
	User        string `json:"user"`
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	Role        string `json:"role"`
	Comment     string `json:"comment,omitempty"`
}

func printKeys(w io.Writer, list []keys.Key, asJSON bool) int {
	views := make([]KeyView, 0, len(list))
	for _, k := range list {
		views = append(views, KeyView{k.User, k.Type(), k.Fingerprint, string(k.Role), k.Comment})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(views)
		return 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tTYPE\tFINGERPRINT\tROLE")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.User, v.Type, v.Fingerprint, v.Role)
	}
	_ = tw.Flush()
	return 0
}

// readKeyArg reads a KEYFILE argument of `keys add`: a path, or - for stdin.
func readKeyArg(arg string, stdin io.Reader) ([]byte, error) {
	if arg == "-" {
		return io.ReadAll(io.LimitReader(stdin, 64<<10))
	}
	return os.ReadFile(arg)
}
