package heroku

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Account is the Heroku account a token belongs to (SPEC G6).
type Account struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// Key is one SSH key registered on an account. PublicKey is the full
// authorized_keys line as uploaded ("ssh-ed25519 AAAA… comment").
type Key struct {
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
}

// App is a Heroku app the token can see.
type App struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	WebURL string `json:"web_url"`
	Owner  struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"owner"`
}

// SlugRequest describes a slug to create (SPEC G4). ProcessTypes is required by
// the API; a nil map is sent as {}.
type SlugRequest struct {
	ProcessTypes                 map[string]string `json:"process_types"`
	Commit                       string            `json:"commit,omitempty"`
	CommitDescription            string            `json:"commit_description,omitempty"`
	BuildpackProvidedDescription string            `json:"buildpack_provided_description,omitempty"`
	Checksum                     string            `json:"checksum,omitempty"` // SHA256:<hex>
	Stack                        string            `json:"stack,omitempty"`    // name or id
}

// Blob is where a slug's bytes go: a presigned URL and the method to use.
type Blob struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// Slug is a created slug, waiting for its bytes at Blob.
type Slug struct {
	ID   string `json:"id"`
	Blob Blob   `json:"blob"`
}

// Release is a release the API created.
type Release struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

func appPath(app string) string { return "/apps/" + url.PathEscape(app) }

// Account returns the account token belongs to: GET /account.
func (c *Client) Account(ctx context.Context, token string, opts ...Option) (Account, error) {
	var a Account
	if err := c.do(ctx, call{method: http.MethodGet, path: "/account", token: token, out: &a, opts: opts}); err != nil {
		return Account{}, fmt.Errorf("heroku: account: %w", err)
	}
	return a, nil
}

// AccountKeys lists the SSH keys of token's account: GET /account/keys. Match a
// key with KeyMatches.
func (c *Client) AccountKeys(ctx context.Context, token string, opts ...Option) ([]Key, error) {
	var ks []Key
	if err := c.do(ctx, call{method: http.MethodGet, path: "/account/keys", token: token, out: &ks, opts: opts}); err != nil {
		return nil, fmt.Errorf("heroku: account keys: %w", err)
	}
	return ks, nil
}

// App returns app as token sees it: GET /apps/{app} (SPEC G5). A 403 or a 404
// returns an error that is ErrNoAccess (errors.Is) and whose text is exactly
// ErrNoAccess's; errors.As still reaches the *APIError behind it.
func (c *Client) App(ctx context.Context, token, app string, opts ...Option) (App, error) {
	var a App
	err := c.do(ctx, call{method: http.MethodGet, path: appPath(app), token: token, out: &a, opts: opts})
	if api, ok := errors.AsType[*APIError](err); ok && (api.Status == http.StatusForbidden || api.Status == http.StatusNotFound) {
		return App{}, &noAccessError{api: api}
	}
	if err != nil {
		return App{}, fmt.Errorf("heroku: app %s: %w", app, err)
	}
	return a, nil
}

// ConfigVars returns app's config vars: GET /apps/{app}/config-vars (SPEC G7).
// A var whose value is null is left out.
func (c *Client) ConfigVars(ctx context.Context, token, app string, opts ...Option) (map[string]string, error) {
	var raw map[string]*string
	if err := c.do(ctx, call{method: http.MethodGet, path: appPath(app) + "/config-vars", token: token, out: &raw, opts: opts}); err != nil {
		return nil, fmt.Errorf("heroku: config vars of %s: %w", app, err)
	}
	vars := make(map[string]string, len(raw))
	for k, v := range raw {
		if v != nil {
			vars[k] = *v
		}
	}
	return vars, nil
}

// BuildpackInstallations returns app's buildpacks in the order they run: GET
// /apps/{app}/buildpack-installations sorted by ordinal (SPEC G7). Official
// buildpacks come back as short names ("heroku/python"): the API's
// "urn:buildpack:" prefix is dropped, and the name is used when there is no URL.
// An empty list means the app has none set.
func (c *Client) BuildpackInstallations(ctx context.Context, token, app string, opts ...Option) ([]string, error) {
	var list []struct {
		Ordinal   int `json:"ordinal"`
		Buildpack struct {
			URL  string `json:"url"`
			Name string `json:"name"`
		} `json:"buildpack"`
	}
	if err := c.do(ctx, call{method: http.MethodGet, path: appPath(app) + "/buildpack-installations", token: token, out: &list, opts: opts}); err != nil {
		return nil, fmt.Errorf("heroku: buildpacks of %s: %w", app, err)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Ordinal < list[j].Ordinal })
	urls := make([]string, 0, len(list))
	for _, bi := range list {
		u := strings.TrimPrefix(bi.Buildpack.URL, "urn:buildpack:")
		if u == "" {
			u = bi.Buildpack.Name
		}
		if u != "" {
			urls = append(urls, u)
		}
	}
	return urls, nil
}

// CreateSlug creates a slug for app: POST /apps/{app}/slugs (SPEC G4). Upload its
// bytes with UploadSlug before releasing it.
func (c *Client) CreateSlug(ctx context.Context, token, app string, req SlugRequest, opts ...Option) (Slug, error) {
	if req.ProcessTypes == nil {
		req.ProcessTypes = map[string]string{}
	}
	var s Slug
	if err := c.do(ctx, call{method: http.MethodPost, path: appPath(app) + "/slugs", token: token, body: req, out: &s, opts: opts}); err != nil {
		return Slug{}, fmt.Errorf("heroku: create slug for %s: %w", app, err)
	}
	if s.ID == "" || s.Blob.URL == "" {
		return Slug{}, fmt.Errorf("heroku: create slug for %s: answer has no slug id or blob URL", app)
	}
	return s, nil
}

// CreateRelease makes slugID the app's current release: POST /apps/{app}/releases
// (SPEC G4). An empty description lets Heroku choose one.
//
// A 5xx is retried like every call, so if Heroku created the release but failed
// to answer, a retry can create a second release of the same slug. That outcome
// (the pushed slug is current, one version number skipped) is accepted over
// rejecting a push whose release may well have happened.
func (c *Client) CreateRelease(ctx context.Context, token, app, slugID, description string, opts ...Option) (Release, error) {
	body := struct {
		Slug        string `json:"slug"`
		Description string `json:"description,omitempty"`
	}{slugID, description}
	var r Release
	if err := c.do(ctx, call{method: http.MethodPost, path: appPath(app) + "/releases", token: token, body: body, out: &r, opts: opts}); err != nil {
		return Release{}, fmt.Errorf("heroku: create release of %s: %w", app, err)
	}
	return r, nil
}
