package receiver

import (
	"regexp"
	"strconv"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// gitEnv is the whole environment of a server-side git process (DESIGN rule 5):
// no server secrets, no user or system git configuration, no prompts.
func gitEnv(extra []string) []string {
	env := []string{
		"PATH=" + defaultPath,
		"HOME=/nonexistent",
		"LANG=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
	}
	return append(env, extra...)
}

var gitProtocolRE = regexp.MustCompile(`^[a-z0-9=:.-]{1,64}$`)

// cleanGitProtocol passes the client's GIT_PROTOCOL through only when it looks
// like one ("version=2"), so a client cannot smuggle anything else to git.
func cleanGitProtocol(v string) string {
	if gitProtocolRE.MatchString(v) {
		return v
	}
	return ""
}

// receivePackConfig is the configuration receive-pack runs with (as -c flags,
// so it never depends on what is stored in the repository).
func receivePackConfig(hooksDir string, maxInputSize int64) []string {
	cfg := []string{
		"core.hooksPath=" + hooksDir,
		"receive.fsckObjects=true",
		"receive.unpackLimit=0",
		// Let shallow pushes reach the hook, which refuses them with a hint (SPEC A7).
		"receive.shallowUpdate=true",
		"receive.denyNonFastForwards=false", // SPEC A6: force pushes are allowed
		"receive.advertisePushOptions=true",
		"receive.denyDeletes=false",
		"core.logAllRefUpdates=false",
		// gc runs after the push, in the foreground, inside the lease (see Receiver.finish).
		"receive.autogc=false",
	}
	if maxInputSize > 0 {
		cfg = append(cfg, "receive.maxInputSize="+strconv.FormatInt(maxInputSize, 10))
	}
	var args []string
	for _, c := range cfg {
		args = append(args, "-c", c)
	}
	return args
}
