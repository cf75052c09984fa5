package herokutest

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmbeddedSchemaIsTheSharedOne keeps testdata/schema.json identical to the
// copy the project was specified against, when that copy is next to the checkout.
func TestEmbeddedSchemaIsTheSharedOne(t *testing.T) {
	t.Parallel()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	shared := filepath.Join(dir, "..", "shared", "heroku-platform-api", "schema.json")
	want, err := os.ReadFile(shared)
	if os.IsNotExist(err) {
		t.Skipf("%s is not present (a clone of the repository alone): nothing to compare", shared)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, schemaJSON) {
		t.Fatalf("testdata/schema.json differs from %s; copy it again", shared)
	}
}

// Every endpoint the fake implements exists in the schema, so nothing it serves
// is made up.
func TestEndpointsAreSchemaLinks(t *testing.T) {
	t.Parallel()
	s, err := LoadSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	found := map[Endpoint]bool{}
	for _, l := range s.links {
		if ep := endpointFor(l.Method, l.Href); ep != "" {
			found[ep] = true
		}
	}
	for _, ep := range apiEndpoints {
		if !found[ep] {
			t.Errorf("%s: no link in the schema", ep)
		}
	}
}

func TestSchemaCheck(t *testing.T) {
	t.Parallel()
	s, err := LoadSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	const slugID = "01234567-89ab-cdef-0123-456789abcdef"
	for _, tc := range []struct {
		name, method, path, body string
		want                     string // a violation must contain it; "" means valid
	}{
		{"account", "GET", "/account", "", ""},
		{"keys", "GET", "/account/keys", "", ""},
		{"app by name", "GET", "/apps/my-app", "", ""},
		{"app by id", "GET", "/apps/" + slugID, "", ""},
		{"config vars", "GET", "/apps/my-app/config-vars", "", ""},
		{"buildpacks", "GET", "/apps/my-app/buildpack-installations", "", ""},
		{"slug", "POST", "/apps/my-app/slugs", `{"process_types":{"web":"./web"},"commit":"abc","checksum":"SHA256:00","stack":"heroku-24"}`, ""},
		{"slug, empty process types", "POST", "/apps/my-app/slugs", `{"process_types":{}}`, ""},
		{"release", "POST", "/apps/my-app/releases", `{"slug":"` + slugID + `","description":"Deploy abc"}`, ""},
		{"rollback", "POST", "/apps/my-app/releases", `{"release":"` + slugID + `"}`, ""},
		{"release by version", "GET", "/apps/my-app/releases/12", "", ""},

		// SPEC G4: process_types is required.
		{"slug without process_types", "POST", "/apps/my-app/slugs", `{"commit":"abc"}`, "body.process_types: required property missing"},
		{"slug with no body", "POST", "/apps/my-app/slugs", ``, "body.process_types: required property missing"},
		{"process type name", "POST", "/apps/my-app/slugs", `{"process_types":{"web!":"x"}}`, `property name "web!" does not match`},
		{"process type command", "POST", "/apps/my-app/slugs", `{"process_types":{"web":7}}`, `body.process_types.web: is integer, want string`},
		{"commit type", "POST", "/apps/my-app/slugs", `{"process_types":{},"commit":42}`, "body.commit: is integer, want null or string"},
		{"stack type", "POST", "/apps/my-app/slugs", `{"process_types":{},"stack":true}`, "matches none of anyOf"},
		{"release without slug", "POST", "/apps/my-app/releases", `{"description":"x"}`, "body.slug: required property missing"},
		{"release slug not a uuid", "POST", "/apps/my-app/releases", `{"slug":"abc"}`, `"abc" is not a uuid`},
		{"not JSON", "POST", "/apps/my-app/slugs", `{process_types`, "body is not JSON"},
		{"body on a GET", "GET", "/account", `{}`, "this link takes no body"},

		{"no such path", "GET", "/apps/my-app/nonsense", "", "no link in the schema matches"},
		{"app name breaks the pattern", "GET", "/apps/My_App", "", "path parameters do not satisfy the schema"},
		{"app name too short", "POST", "/apps/x/slugs", `{"process_types":{}}`, "path parameters do not satisfy the schema"},
		{"wrong verb", "DELETE", "/account/keys", "", "the schema has no DELETE link for this path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, v := s.Check(tc.method, tc.path, []byte(tc.body))
			switch {
			case tc.want == "" && len(v) > 0:
				t.Fatalf("want valid, got %q", v)
			case tc.want != "" && !strings.Contains(strings.Join(v, "\n"), tc.want):
				t.Fatalf("want a violation containing %q, got %q", tc.want, v)
			}
		})
	}
}

// The fake checks its own answers with the same validator; make sure that
// check can fail.
func TestCheckAnswer(t *testing.T) {
	t.Parallel()
	s, err := LoadSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.CheckAnswer("GET", "/account", []byte(`{"id":"01234567-89ab-cdef-0123-456789abcdef","email":"a@b.c"}`)); len(v) != 0 {
		t.Fatalf("good answer: %q", v)
	}
	v := s.CheckAnswer("GET", "/account", []byte(`{"id":"nope","email":5}`))
	if got := strings.Join(v, "\n"); !strings.Contains(got, `"nope" is not a uuid`) || !strings.Contains(got, "answer.email: is integer") {
		t.Fatalf("bad answer: %q", v)
	}
	href := "/apps/{(%23%2Fdefinitions%2Fapp%2Fdefinitions%2Fidentity)}/releases"
	if v := s.CheckAnswer("POST", href, []byte(`{"version":"3"}`)); len(v) == 0 {
		t.Fatal("a string version passed")
	}
}

// A malformed request through the fake gets a 400 with a JSON error, and the
// violation is recorded for the test to see.
func TestServerFlagsMalformedRequests(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.AddAccount("a@example.com", "tok")
	srv.AddApp("my-app", "tok")

	do := func(method, path, body string, hdr map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", wantAccept)
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("User-Agent", "sokoban/test")
		req.Header.Set("Request-Id", "1")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if st, b := do("GET", "/apps/my-app", "", nil); st != 200 {
		t.Fatalf("a good request: %d %s", st, b)
	}
	srv.AssertClean(t)

	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		want                     string
	}{
		{"missing process_types", "POST", "/apps/my-app/slugs", `{"commit":"abc"}`, nil, "process_types: required property missing"},
		{"bad path", "POST", "/apps/x/slugs", `{"process_types":{}}`, nil, "path parameters do not satisfy the schema"},
		{"unknown path", "GET", "/apps/my-app/slugs-please", "", nil, "no link in the schema"},
		// SPEC G1
		{"no Accept", "GET", "/account", "", map[string]string{"Accept": ""}, "Accept is"},
		{"Accept v2", "GET", "/account", "", map[string]string{"Accept": "application/json"}, "Accept is"},
		{"no token", "GET", "/account", "", map[string]string{"Authorization": ""}, "Authorization"},
		{"Go's User-Agent", "GET", "/account", "", map[string]string{"User-Agent": "Go-http-client/1.1"}, "User-Agent is Go's default"},
		{"no Request-Id", "GET", "/account", "", map[string]string{"Request-Id": ""}, "Request-Id missing"},
		{"body not JSON typed", "POST", "/apps/my-app/slugs", `{"process_types":{}}`, map[string]string{"Content-Type": "text/plain"}, "Content-Type"},
	} {
		st, body := do(tc.method, tc.path, tc.body, tc.hdr)
		if st != http.StatusBadRequest || !strings.Contains(body, `"id":"bad_request"`) {
			t.Errorf("%s: got %d %s, want 400 bad_request", tc.name, st, body)
		}
		v := srv.TakeViolations()
		if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), tc.want) {
			t.Errorf("%s: violations %q, want one containing %q", tc.name, v, tc.want)
		}
	}

	// A link that is in the schema but not implemented is flagged too.
	if st, _ := do("GET", "/apps/my-app/releases", "", nil); st != http.StatusNotFound {
		t.Errorf("unimplemented endpoint: %d, want 404", st)
	}
	if v := srv.TakeViolations(); len(v) != 1 || !strings.Contains(v[0], "does not implement") {
		t.Errorf("unimplemented endpoint: violations %q", v)
	}
}

// The blob store refuses what a presigned S3 URL would refuse, and says why.
func TestBlobContract(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.AddAccount("a@example.com", "tok")
	srv.AddApp("my-app", "tok")

	put := func(url string, hdr map[string]string, body string, chunked bool) int {
		t.Helper()
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // hides the length: sent chunked
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, url, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	slugURL := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/apps/my-app/slugs", strings.NewReader(`{"process_types":{}}`))
		req.Header.Set("Accept", wantAccept)
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("User-Agent", "sokoban/test")
		req.Header.Set("Request-Id", "1")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		i := strings.Index(string(b), `"url":"`)
		if resp.StatusCode != http.StatusCreated || i < 0 {
			t.Fatalf("create slug: %d %s", resp.StatusCode, b)
		}
		return strings.SplitN(string(b[i+7:]), `"`, 2)[0]
	}

	u := slugURL()
	for _, tc := range []struct {
		name    string
		url     string
		hdr     map[string]string
		chunked bool
		want    string
	}{
		{"Content-Type set", u, map[string]string{"Content-Type": "application/octet-stream"}, false, "Content-Type"},
		{"Authorization sent", u, map[string]string{"Authorization": "Bearer tok"}, false, "Authorization header"},
		{"chunked", u, nil, true, "no Content-Length"},
		{"bad signature", strings.Split(u, "?")[0] + "?signature=forged", nil, false, "bad signature"},
	} {
		if st := put(tc.url, tc.hdr, "slug", tc.chunked); st != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tc.name, st)
		}
		if v := srv.TakeViolations(); len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), tc.want) {
			t.Errorf("%s: violations %q, want one containing %q", tc.name, v, tc.want)
		}
	}
	if st := put(u, nil, "slug", false); st != http.StatusOK {
		t.Fatalf("good PUT: %d", st)
	}
	srv.AssertClean(t)
}
