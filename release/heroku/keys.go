package heroku

import (
	"bytes"
	"encoding/base64"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyMatches reports whether k, a key registered on a Heroku account, is pub.
// It compares the key itself (type + base64 blob of the authorized_keys form, as
// DESIGN.md says), not Heroku's fingerprint string, whose format is Heroku's to
// change. Options before the type and the trailing comment are ignored.
// A certificate matches only a registered certificate, never its bare key.
func KeyMatches(k Key, pub ssh.PublicKey) bool {
	if pub == nil {
		return false
	}
	want := pub.Marshal()
	f := strings.Fields(k.PublicKey)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != pub.Type() {
			continue
		}
		blob, err := base64.StdEncoding.DecodeString(f[i+1])
		if err != nil {
			blob, err = base64.RawStdEncoding.DecodeString(f[i+1])
		}
		if err == nil && bytes.Equal(blob, want) {
			return true
		}
	}
	return false
}
