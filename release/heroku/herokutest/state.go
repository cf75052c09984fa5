package herokutest

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// appNameRE is the schema's app name pattern (#/definitions/app/definitions/name).
var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)

// AddAccount makes token authenticate as the account with email, creating the
// account on first use; several tokens may share one account. It returns the
// account's id.
func (s *Server) AddAccount(email, token string) string {
	s.t.Helper()
	if email == "" || token == "" {
		s.t.Fatalf("herokutest: AddAccount needs an email and a token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[email]
	if a == nil {
		a = &account{id: newID(), email: email, created: time.Now().UTC()}
		s.accounts[email] = a
	}
	s.tokens[token] = a
	return a.id
}

// RevokeToken makes token fail with 401 "unauthorized" from now on.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// AddKey registers an SSH key (an authorized_keys line) on token's account and
// returns its id. Like Heroku, the listing shows the line as given and an MD5
// fingerprint.
func (s *Server) AddKey(token, authorizedKey string) string {
	s.t.Helper()
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		s.t.Fatalf("herokutest: AddKey: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustAccount(token)
	k := &key{
		id: newID(), fingerprint: ssh.FingerprintLegacyMD5(pub), publicKey: strings.TrimSpace(authorizedKey),
		comment: comment, blob: pub.Marshal(), created: time.Now().UTC(),
	}
	a.keys = append(a.keys, k)
	return k.id
}

// RemoveKey removes the key (an authorized_keys line, compared by the key
// itself) from token's account.
func (s *Server) RemoveKey(token, authorizedKey string) {
	s.t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		s.t.Fatalf("herokutest: RemoveKey: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustAccount(token)
	a.keys = slices.DeleteFunc(a.keys, func(k *key) bool { return bytes.Equal(k.blob, pub.Marshal()) })
}

// AddApp creates app name owned by ownerToken's account and returns its id.
func (s *Server) AddApp(name, ownerToken string) string {
	s.t.Helper()
	if !appNameRE.MatchString(name) {
		s.t.Fatalf("herokutest: AddApp: %q is not a valid Heroku app name", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := s.mustAccount(ownerToken)
	if s.apps[name] != nil {
		s.t.Fatalf("herokutest: AddApp: %s exists", name)
	}
	a := &app{
		id: newID(), name: name, owner: owner, collaborators: map[*account]bool{},
		config: map[string]*string{}, created: time.Now().UTC(),
	}
	a.webURL = "https://" + name + "-" + strings.ReplaceAll(a.id, "-", "")[:12] + ".herokuapp.com/"
	s.apps[name] = a
	return a.id
}

// AddCollaborator gives token's account access to app.
func (s *Server) AddCollaborator(app, token string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustApp(app).collaborators[s.mustAccount(token)] = true
}

// SetConfig replaces app's config vars.
func (s *Server) SetConfig(app string, vars map[string]string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustApp(app)
	a.config = map[string]*string{}
	for k, v := range vars {
		a.config[k] = &v
	}
}

// SetNullConfig adds config vars that the API lists with a null value.
func (s *Server) SetNullConfig(app string, keys ...string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustApp(app)
	for _, k := range keys {
		a.config[k] = nil
	}
}

// SetBuildpacks sets app's buildpacks in run order. A registry name
// ("heroku/python") is listed the way the API lists it: url
// "urn:buildpack:heroku/python", name "heroku/python".
func (s *Server) SetBuildpacks(app string, buildpacks ...string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustApp(app).buildpacks = slices.Clone(buildpacks)
}

// Releases returns app's releases, oldest first.
func (s *Server) Releases(app string) []ReleaseRecord {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mustApp(app).releases)
}

// Slug returns the slug with id, with the bytes uploaded to it.
func (s *Server) Slug(id string) (SlugRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slugs[id]
	if sl == nil {
		return SlugRecord{}, false
	}
	out := *sl
	out.ProcessTypes = maps.Clone(sl.ProcessTypes)
	out.Blob = slices.Clone(sl.Blob)
	out.ContentType = slices.Clone(sl.ContentType)
	return out, true
}

// mustAccount is called with s.mu held; the caller's deferred Unlock still runs
// when Fatalf ends the goroutine.
func (s *Server) mustAccount(token string) *account {
	s.t.Helper()
	a := s.tokens[token]
	if a == nil {
		s.t.Fatalf("herokutest: no account has that token")
	}
	return a
}

// mustApp is called with s.mu held.
func (s *Server) mustApp(name string) *app {
	s.t.Helper()
	a := s.apps[name]
	if a == nil {
		s.t.Fatalf("herokutest: no app %s", name)
	}
	return a
}
