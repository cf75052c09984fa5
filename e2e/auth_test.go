package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// CVE-2024-45337 regression. The story: an SSH client may offer several public
// keys, and the server's PublicKeyCallback runs for each. Servers that
// remembered "the last key the callback approved" as the identity could be
// fooled: a client offers Alice's public key (which it can copy from anywhere,
// but cannot sign with), the server approves it as acceptable, then the client
// authenticates with its own key. If the server then acts on Alice's key, the
// attacker is Alice. Sokoban binds the identity to the key that actually signed
// (x/crypto's VerifiedPublicKeyCallback) and resolves the user after the
// handshake. This test uses the real OpenSSH client, which does exactly that
// dance when given a public key file without its private key.
func TestCVE202445337OfferedKeyIsNotIdentity(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	alice := srv.addUser("alice@example.com", true)
	mallory := srv.addUser("mallory@example.com", false)

	// Mallory holds only Alice's public key.
	stolen := filepath.Join(t.TempDir(), "alice.pub")
	pub, err := os.ReadFile(alice.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stolen, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"-v", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-i", stolen, "-i", mallory.key, "-p", srv.port, "git@127.0.0.1", "whoami",
	}
	cmd := exec.Command("ssh", args...)
	cmd.Env = cleanEnv(t.TempDir())
	res := runResult(t, cmd)
	// The precondition of the attack: the server did say it would accept Alice's key.
	if !strings.Contains(res.stderr, "Server accepts key: "+stolen) {
		t.Fatalf("the client never offered the stolen key, so the test proves nothing:\n%s", res)
	}
	if res.code != 0 || !strings.Contains(res.stdout, "mallory@example.com") || strings.Contains(res.stdout, "alice") {
		t.Fatalf("identity after offering Alice's key and signing with Mallory's:\n%s", res)
	}
	if !strings.Contains(res.stdout, "role         user") {
		t.Fatalf("Mallory got Alice's admin role:\n%s", res.stdout)
	}
}

// SPEC F1: unknown keys are refused before anything runs; a removed key stops
// working without a restart.
func TestUnknownAndRemovedKeysAreRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	stranger := srv.newKey("stranger@example.com")
	res := runResult(t, srv.ssh(stranger, "whoami"))
	if res.code == 0 || !strings.Contains(res.stderr, "Permission denied (publickey)") {
		t.Fatalf("unknown key:\n%s", res)
	}
	bob := srv.addUser("bob@example.com", false)
	list := srv.sokoban("keys", "list", "--data", srv.data)
	fields := strings.Fields(list[strings.Index(list, "bob@example.com"):])
	if len(fields) < 4 || fields[1] != "ssh-ed25519" || !strings.HasPrefix(fields[2], "SHA256:") || fields[3] != "user" {
		t.Fatalf("keys list:\n%s", list)
	}
	srv.sokoban("keys", "remove", "--data", srv.data, fields[2])
	waitFor(t, "the removed key to be refused", func() bool {
		return runResult(t, srv.ssh(bob, "whoami")).code != 0
	})
}

// Host keys are generated once, mode 0600, and reused after a restart (the
// client would otherwise see a host key change).
func TestHostKeysPersist(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	u := srv.addUser("alice@example.com", false)
	scan := func() string {
		out := runResult(t, exec.Command("ssh-keyscan", "-p", srv.port, "-t", "ed25519,rsa", "127.0.0.1"))
		if out.code != 0 || !strings.Contains(out.stdout, "ssh-ed25519") || !strings.Contains(out.stdout, "ssh-rsa") {
			t.Fatalf("ssh-keyscan:\n%s", out)
		}
		// Compare the keys, not the "[host]:port" prefix (the port is new each start).
		var keys []string
		for _, line := range strings.Split(strings.TrimSpace(out.stdout), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				keys = append(keys, f[1]+" "+f[2])
			}
		}
		sort.Strings(keys) // ssh-keyscan prints in no fixed order
		return strings.Join(keys, "\n")
	}
	before := scan()
	for _, name := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key"} {
		st, err := os.Stat(filepath.Join(srv.data, "host_keys", name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v", name, err, st.Mode())
		}
	}
	srv.stop()
	srv.start()
	if after := scan(); after != before {
		t.Fatalf("host keys changed across a restart:\n%s\nvs\n%s", before, after)
	}
	// RSA host keys sign with SHA-2 only.
	cmd := srv.ssh(u, "whoami")
	cmd.Args = append(cmd.Args[:1], append([]string{"-o", "HostKeyAlgorithms=ssh-rsa"}, cmd.Args[1:]...)...)
	if res := runResult(t, cmd); res.code == 0 {
		t.Fatalf("an ssh-rsa (SHA-1) host key signature was accepted:\n%s", res)
	}
	cmd = srv.ssh(u, "whoami")
	cmd.Args = append(cmd.Args[:1], append([]string{"-o", "HostKeyAlgorithms=rsa-sha2-512"}, cmd.Args[1:]...)...)
	if res := runResult(t, cmd); res.code != 0 {
		t.Fatalf("rsa-sha2-512 host key:\n%s", res)
	}
}

// No PTY, no port forwarding, no agent forwarding: the front door serves
// commands and nothing else.
func TestNoPTYOrForwarding(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	u := srv.addUser("alice@example.com", false)
	cmd := srv.ssh(u, "whoami")
	cmd.Args = append(cmd.Args[:1], append([]string{"-tt", "-o", "LogLevel=INFO"}, cmd.Args[1:]...)...)
	if res := runResult(t, cmd); !strings.Contains(res.stderr, "PTY allocation request failed") {
		t.Fatalf("-tt:\n%s", res)
	}
	cmd = srv.ssh(u, "-N", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:0:127.0.0.1:22")
	if res := runResult(t, cmd); res.code == 0 {
		t.Fatalf("local forwarding was allowed:\n%s", res)
	}
	cmd = srv.ssh(u, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22")
	if res := runResult(t, cmd); res.code == 0 {
		t.Fatalf("remote forwarding was allowed:\n%s", res)
	}
}
