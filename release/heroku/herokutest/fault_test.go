package herokutest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A Drop fault closes the connection without an answer (an API that is down),
// for the API and for the blob store alike, and is recorded with status 0.
func TestDropFault(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.AddAccount("a@example.com", "tok")
	srv.AddApp("my-app", "tok")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	get := func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/apps/my-app", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", wantAccept)
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("User-Agent", "sokoban/test")
		req.Header.Set("Request-Id", "1")
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	srv.FailNext(EndpointApp, 1, Fault{Drop: true})
	if err := get(); err == nil {
		t.Fatal("a dropped request got an answer")
	}
	if err := get(); err != nil {
		t.Fatalf("the fault outlived its count: %v", err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || reqs[0].Status != 0 || reqs[1].Status != http.StatusOK {
		t.Fatalf("requests: %+v", reqs)
	}

	// A slug to get a genuine blob URL.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/apps/my-app/slugs", strings.NewReader(`{"process_types":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Accept": wantAccept, "Authorization": "Bearer tok", "User-Agent": "sokoban/test",
		"Request-Id": "2", "Content-Type": "application/json"} {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var slug struct {
		Blob struct{ URL string } `json:"blob"`
	}
	err = json.NewDecoder(resp.Body).Decode(&slug)
	_ = resp.Body.Close()
	if err != nil || slug.Blob.URL == "" {
		t.Fatalf("create slug: %v", err)
	}
	srv.FailNext(EndpointBlob, -1, Fault{Drop: true})
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPut, slug.Blob.URL, strings.NewReader("z"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["Content-Type"] = []string{""}
	if resp, err := client.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("a dropped blob PUT was answered %d", resp.StatusCode)
	}
	srv.AssertClean(t)
}
