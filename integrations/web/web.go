// Package web is the gateway's dashboard: a page of plain HTML, CSS and
// JavaScript embedded in the binary (no build step, no CDN: it works
// offline) that the gateway serves at /. Everything it shows and does is
// a call to the REST API (integrations/rest) or its event stream
// (GET /api/v1/stream); it holds no state of its own and needs no token
// to load, only to read data.
//
// Every URL in the page is relative, so it also works below a path
// prefix behind a reverse proxy (https://host/meshfleet/).
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Files is the dashboard's files, index.html at the top.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Handler serves the dashboard's files. Mount it at / (or below a
// prefix, with http.StripPrefix).
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Only the page's own files run; nothing is framed or fetched
		// elsewhere. Inline styles are the bars' and legends' widths and colours.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// A new gateway version brings a new page: revalidate.
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard's files are read-only", http.StatusMethodNotAllowed)
			return
		}
		files.ServeHTTP(w, r)
	})
}
