package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(b)
}

func TestServesThePage(t *testing.T) {
	h := Handler()
	resp, body := get(t, h, "GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>meshfleet</title>") {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	for _, p := range []string{"/app.js", "/style.css"} {
		if resp, _ := get(t, h, "GET", p); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, h, "GET", "/nope.js"); resp.StatusCode != 404 {
		t.Errorf("GET /nope.js: %d", resp.StatusCode)
	}
	if resp, _ := get(t, h, "POST", "/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
}

// TestRelativeURLsOnly: the page works below a reverse proxy's path
// prefix and offline only if no file names an absolute path or another
// host.
func TestRelativeURLsOnly(t *testing.T) {
	bad := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["'](/|https?:|//)|fetch\(\s*["'\x60]/|url\(\s*["']?(/|https?:)|https?://`)
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := bad.FindString(line); m != "" && !strings.Contains(line, "http://www.w3.org/2000/svg") {
				t.Errorf("%s:%d: %q is not a relative URL", p, i+1, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
