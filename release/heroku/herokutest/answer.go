package herokutest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

const rfc3339 = time.RFC3339

// answer serves one valid, authenticated-to-be API request to ep.
func (s *Server) answer(ep Endpoint, r *http.Request, token string, body []byte) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acct := s.tokens[token]
	if acct == nil {
		return http.StatusUnauthorized, apiError{"unauthorized", "Invalid credentials provided."}
	}
	switch ep {
	case EndpointAccount:
		return http.StatusOK, map[string]any{
			"id": acct.id, "email": acct.email, "verified": true, "beta": false, "allow_tracking": true,
			"two_factor_authentication": false, "created_at": acct.created.Format(rfc3339),
			"updated_at": acct.created.Format(rfc3339),
		}
	case EndpointAccountKeys:
		out := []any{}
		for _, k := range acct.keys {
			out = append(out, map[string]any{
				"id": k.id, "fingerprint": k.fingerprint, "public_key": k.publicKey, "comment": k.comment,
				"email": acct.email, "created_at": k.created.Format(rfc3339), "updated_at": k.created.Format(rfc3339),
			})
		}
		return http.StatusOK, out
	}

	a, status, errAnswer := s.appFor(r, acct)
	if a == nil {
		return status, errAnswer
	}
	switch ep {
	case EndpointApp:
		return http.StatusOK, map[string]any{
			"id": a.id, "name": a.name, "web_url": a.webURL, "git_url": "https://git.heroku.com/" + a.name + ".git",
			"owner":      map[string]any{"id": a.owner.id, "email": a.owner.email},
			"created_at": a.created.Format(rfc3339), "updated_at": a.created.Format(rfc3339),
		}
	case EndpointConfigVars:
		out := map[string]any{}
		for k, v := range a.config {
			if v == nil {
				out[k] = nil
			} else {
				out[k] = *v
			}
		}
		return http.StatusOK, out
	case EndpointBuildpacks:
		// Newest ordinal first on purpose: clients must order by ordinal, not trust the array.
		out := []any{}
		for i := len(a.buildpacks) - 1; i >= 0; i-- {
			bp := a.buildpacks[i]
			u := bp
			if !strings.Contains(bp, "://") && !strings.HasPrefix(bp, "urn:") {
				u = "urn:buildpack:" + bp // how the API lists registry buildpacks
			}
			out = append(out, map[string]any{"ordinal": i, "buildpack": map[string]any{"url": u, "name": bp}})
		}
		return http.StatusOK, out
	case EndpointCreateSlug:
		return s.createSlug(a, body)
	case EndpointCreateRelease:
		return s.createRelease(a, acct, body)
	}
	return http.StatusNotFound, apiError{"not_found", "herokutest: not implemented"}
}

// appFor finds the app a request names and checks the account may see it: 404
// when it does not exist, 403 when it does but the account is neither owner nor
// collaborator. Called with s.mu held.
func (s *Server) appFor(r *http.Request, acct *account) (*app, int, any) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		return nil, http.StatusNotFound, apiError{"not_found", "Couldn't find that app."}
	}
	ident := parts[1]
	a := s.apps[ident]
	if a == nil {
		for _, x := range s.apps {
			if x.id == ident {
				a = x
			}
		}
	}
	if a == nil {
		return nil, http.StatusNotFound, apiError{"not_found", "Couldn't find that app."}
	}
	if a.owner != acct && !a.collaborators[acct] {
		return nil, http.StatusForbidden, apiError{"forbidden", "You do not have access to the app " + a.name + "."}
	}
	return a, 0, nil
}

// createSlug records a slug and hands out a blob URL signed with a secret, the
// way Heroku hands out a presigned S3 URL. Called with s.mu held.
func (s *Server) createSlug(a *app, body []byte) (int, any) {
	var req struct {
		ProcessTypes                 map[string]string `json:"process_types"`
		Commit                       *string           `json:"commit"`
		CommitDescription            *string           `json:"commit_description"`
		BuildpackProvidedDescription *string           `json:"buildpack_provided_description"`
		Checksum                     *string           `json:"checksum"`
		Stack                        string            `json:"stack"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return http.StatusUnprocessableEntity, apiError{"invalid_params", "herokutest: " + err.Error()}
	}
	if req.Stack == "" {
		req.Stack = "heroku-24"
	}
	now := time.Now().UTC()
	sl := &SlugRecord{
		ID: newID(), App: a.name, ProcessTypes: req.ProcessTypes, Commit: deref(req.Commit),
		CommitDescription: deref(req.CommitDescription), BuildpackProvidedDescription: deref(req.BuildpackProvidedDescription),
		Checksum: deref(req.Checksum), Stack: req.Stack, CreatedAt: now,
	}
	secret := newID()
	s.slugs[sl.ID] = sl
	s.secrets[sl.ID] = secret
	stack := map[string]any{"id": newID(), "name": req.Stack}
	if uuidRE.MatchString(req.Stack) {
		stack = map[string]any{"id": req.Stack, "name": "heroku-24"}
	}
	return http.StatusCreated, map[string]any{
		"id": sl.ID,
		// Heroku answers a lower-case method; clients upper-case it (SPEC G4).
		"blob":          map[string]any{"method": "put", "url": s.URL + "/blobs/" + sl.ID + "?signature=" + secret},
		"process_types": orEmpty(sl.ProcessTypes), "commit": req.Commit, "commit_description": req.CommitDescription,
		"buildpack_provided_description": req.BuildpackProvidedDescription, "checksum": req.Checksum,
		"size": nil, "stack": stack, "created_at": now.Format(rfc3339), "updated_at": now.Format(rfc3339),
	}
}

// createRelease makes a slug current. The fake is stricter than it needs to be
// about the slug: it must belong to the app, be uploaded, and match the checksum
// it was created with. Called with s.mu held.
func (s *Server) createRelease(a *app, acct *account, body []byte) (int, any) {
	var req struct {
		Slug        string `json:"slug"`
		Description string `json:"description"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return http.StatusUnprocessableEntity, apiError{"invalid_params", "herokutest: " + err.Error()}
	}
	if req.Slug == "" {
		return http.StatusUnprocessableEntity, apiError{"invalid_params", "herokutest: only slug releases are implemented"}
	}
	sl := s.slugs[req.Slug]
	switch {
	case sl == nil || sl.App != a.name:
		return http.StatusNotFound, apiError{"not_found", "Couldn't find that slug."}
	case !sl.Uploaded:
		return http.StatusUnprocessableEntity, apiError{"invalid_params", "Slug " + sl.ID + " has not been uploaded."}
	case sl.Checksum != "" && sl.Checksum != sl.BlobChecksum:
		return http.StatusUnprocessableEntity, apiError{"invalid_params",
			fmt.Sprintf("Slug checksum %s does not match the uploaded blob (%s).", sl.Checksum, sl.BlobChecksum)}
	}
	desc := req.Description
	if desc == "" {
		desc = "Deploy " + shortCommit(sl.Commit)
	}
	now := time.Now().UTC()
	rel := ReleaseRecord{ID: newID(), Version: len(a.releases) + 1, SlugID: sl.ID, Description: desc, User: acct.email, CreatedAt: now}
	a.releases = append(a.releases, rel)
	return http.StatusCreated, map[string]any{
		"id": rel.ID, "version": rel.Version, "description": rel.Description, "status": "succeeded",
		"current": true, "eligible_for_rollback": true, "output_stream_url": nil, "addon_plan_names": []string{},
		"slug": map[string]any{"id": sl.ID}, "user": map[string]any{"id": acct.id, "email": acct.email},
		"app":        map[string]any{"id": a.id, "name": a.name},
		"created_at": now.Format(rfc3339), "updated_at": now.Format(rfc3339),
	}
}

// serveBlob is the blob store: a presigned PUT needs the URL's signature and
// nothing else. Like S3 it wants a Content-Length (no chunked upload), refuses an
// Authorization header next to a presigned signature, and refuses a non-empty
// Content-Type because the URL was signed with an empty one.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	rec := Request{Endpoint: EndpointBlob, Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
	id := strings.TrimPrefix(r.URL.Path, "/blobs/")
	s.mu.Lock()
	secret, known := s.secrets[id]
	s.mu.Unlock()
	got := r.URL.Query().Get("signature")
	switch {
	case r.Method != http.MethodPut:
		rec.Violations = append(rec.Violations, fmt.Sprintf("blob: method %s, want PUT", r.Method))
	case !known || subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1:
		rec.Violations = append(rec.Violations, "blob: unknown slug or bad signature (URL not as handed out)")
	}
	if r.Header.Get("Authorization") != "" {
		rec.Violations = append(rec.Violations, "blob: Authorization header sent to a presigned URL")
	}
	if r.ContentLength < 0 || slices.Contains(r.TransferEncoding, "chunked") {
		rec.Violations = append(rec.Violations, "blob: no Content-Length (chunked upload)")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		rec.Violations = append(rec.Violations, fmt.Sprintf("blob: Content-Type %q, want empty", ct))
	}
	if len(rec.Violations) > 0 {
		rec.Status = http.StatusForbidden
		s.record(rec)
		writeS3Error(w, rec.Status, "SignatureDoesNotMatch", strings.Join(rec.Violations, "; "))
		return
	}
	idx := s.arrive(rec)
	if !s.hold(r, EndpointBlob) {
		s.finish(idx, rec)
		return
	}
	s.mu.Lock()
	fault, faulted := s.takeFault(EndpointBlob)
	halfway := s.halfway != 0
	if s.halfway > 0 {
		s.halfway--
	}
	s.mu.Unlock()
	if faulted && fault.Drop {
		s.finish(idx, rec)
		dropConn(w)
		return
	}
	if faulted {
		rec.Status = fault.Status
		s.finish(idx, rec)
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		writeS3Error(w, fault.Status, s3Code(fault.Status), fault.Message)
		return
	}
	if halfway {
		_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		s.finish(idx, rec) // Status 0: the connection was dropped
		dropConn(w)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		s.finish(idx, rec) // the client went away mid-upload: nothing stored, like S3
		return
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	if sl := s.slugs[id]; sl != nil {
		sl.Uploaded = true
		sl.Blob = data
		sl.BlobChecksum = "SHA256:" + hex.EncodeToString(sum[:])
		sl.ContentType = slices.Clone(r.Header.Values("Content-Type")) // [""] when sent empty, nil when absent
	}
	s.mu.Unlock()
	rec.Status = http.StatusOK
	s.finish(idx, rec)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	w.WriteHeader(http.StatusOK)
}

func writeS3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>",
		xmlEscape(code), xmlEscape(msg))
}

func s3Code(status int) string {
	switch status {
	case http.StatusServiceUnavailable:
		return "SlowDown"
	case http.StatusInternalServerError:
		return "InternalError"
	case http.StatusForbidden:
		return "AccessDenied"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}
