package heroku

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
)

// KeyRegistry is the key store as linking needs it (keys.Store).
type KeyRegistry interface {
	Lookup(ctx context.Context, pk ssh.PublicKey) (keys.Key, error)
	Add(ctx context.Context, user string, role keys.Role, pk ssh.PublicKey, comment string) (keys.Key, error)
}

// LinkWriter stores account links (keys.HerokuLinks).
type LinkWriter interface {
	Put(ctx context.Context, l keys.HerokuLink) error
}

// Linker links SSH keys to Heroku accounts (SPEC G6), for `sokoban keys add
// --heroku-token-file` and the admin SSH command that does the same.
type Linker struct {
	client *Client
	keys   KeyRegistry
	links  LinkWriter
}

// NewLinker returns a Linker that checks with c and records in reg and links.
func NewLinker(c *Client, reg KeyRegistry, links LinkWriter) *Linker {
	return &Linker{client: c, keys: reg, links: links}
}

// LinkKey proves that authorizedKey (one public key in authorized_keys form)
// is registered on the Heroku account token belongs to, then registers it with
// the account's email as its user and stores token as the account's link. It
// refuses with a *UserError that says why: the token was rejected, the key is
// not on that account, or it is registered to another user. Linking a key that
// is already linked to the same account replaces the account's token. Neither
// the token nor anything derived from it appears in an error.
func (l *Linker) LinkKey(ctx context.Context, token string, authorizedKey []byte) (keys.Key, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return keys.Key{}, &UserError{Message: "the Heroku API token is empty"}
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return keys.Key{}, &UserError{Message: "the Heroku API token must be one line without spaces"}
	}
	pk, comment, err := keys.ParsePublicKey(authorizedKey)
	if err != nil {
		return keys.Key{}, &UserError{Err: err, Message: "expected one public key, as in ~/.ssh/id_ed25519.pub"}
	}
	fp := ssh.FingerprintSHA256(pk)
	acct, err := l.client.Account(ctx, token)
	if err != nil {
		return keys.Key{}, linkFailure("the token's Heroku account could not be read", err)
	}
	if !keys.ValidUser(acct.Email) {
		return keys.Key{}, &UserError{Message: fmt.Sprintf(
			"the Heroku account's email %q cannot be a user name here (at most 64 of letters, digits and ._@+-)", acct.Email)}
	}
	list, err := l.client.AccountKeys(ctx, token)
	if err != nil {
		return keys.Key{}, linkFailure("the Heroku account's SSH keys could not be read", err)
	}
	found := false
	for _, k := range list {
		if KeyMatches(k, pk) {
			found = true
			break
		}
	}
	if !found {
		return keys.Key{}, &UserError{Message: fmt.Sprintf(
			"the key %s is not registered on the Heroku account %s; add it there first (heroku keys:add) and link it again",
			fp, acct.Email)}
	}
	existing, lookupErr := l.keys.Lookup(ctx, pk)
	switch {
	case lookupErr == nil && !strings.EqualFold(existing.User, acct.Email):
		return keys.Key{}, &UserError{Message: fmt.Sprintf("the key %s is already registered to %s", fp, existing.User)}
	case lookupErr != nil && !errors.Is(lookupErr, keys.ErrUnknownKey):
		return keys.Key{}, fmt.Errorf("heroku: link key: %w", lookupErr)
	}
	if err := l.links.Put(ctx, keys.HerokuLink{Email: acct.Email, AccountID: acct.ID, Token: token}); err != nil {
		return keys.Key{}, fmt.Errorf("heroku: link key: %w", err)
	}
	if lookupErr == nil {
		return existing, nil // already linked to this account: the new token is stored
	}
	k, err := l.keys.Add(ctx, acct.Email, keys.RoleUser, pk, comment)
	if err != nil {
		return keys.Key{}, fmt.Errorf("heroku: link key: %w", err)
	}
	return k, nil
}

// linkFailure explains a failed call while linking.
func linkFailure(what string, err error) *UserError {
	if errors.Is(err, ErrUnauthorized) {
		return &UserError{Err: err, Message: "Heroku rejected the token (invalid, expired or revoked): " + UserMessage(err)}
	}
	return &UserError{Err: err, Message: what + ": " + UserMessage(err)}
}

// ParseLinkInput reads what the admin SSH command takes on stdin: the API
// token on the first line, then the public key.
func ParseLinkInput(r io.Reader) (token string, authorizedKey []byte, err error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", nil, fmt.Errorf("heroku: read link input: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var rest bytes.Buffer
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case token == "" && line != "":
			token = line
		case token != "":
			rest.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, fmt.Errorf("heroku: read link input: %w", err)
	}
	if token == "" || len(bytes.TrimSpace(rest.Bytes())) == 0 {
		return "", nil, &UserError{Message: "expected the Heroku API token on the first line, then the public key"}
	}
	return token, rest.Bytes(), nil
}
