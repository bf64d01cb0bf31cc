// Package docs holds the repository's reference documents; its test checks
// that every citation of them in code and docs leads somewhere.
package docs

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The documents a § or Q- citation can point into, relative to the
// repository root. A bare citation means the protocol reference; one right
// after the name of an extension spec means that spec.
const (
	protocolDoc = "docs/protocol.md"
	otaSpec     = "ota/PROTOCOL.md"
	statusSpec  = "status/PROTOCOL.md"
)

var (
	citeRe = regexp.MustCompile(`§(\d+(?:\.\d+)*)|Q-(\d+)`)
	// A quirk's lettered item: "Q-19 f", "Q-19(b)", "Q-19 a, b, h" (the first).
	quirkItemRe = regexp.MustCompile(`^(?:\s*\(([a-z])\)|\s([a-z])\b[^\w'-])`)
	// An extension spec named right before a citation, as text or as a link.
	specBeforeRe = regexp.MustCompile("((?:ota|status)/PROTOCOL\\.md)[`)\\]]*\\s*$")
	// A citation that is itself a link to a heading of its own file, as the
	// extension specs cite their own sections.
	selfLinkRe = regexp.MustCompile(`^\]\(#([^)\s]+)\)`)
	// Links into the three documents from any Markdown file.
	docLinkRe = regexp.MustCompile(`\]\(((?:[./]*[\w/]*)?(?:docs/protocol\.md|protocol\.md|PROTOCOL\.md))#([^)\s]+)\)`)

	headingRe  = regexp.MustCompile(`^(#+)\s+(.*?)\s*$`)
	sectionRe  = regexp.MustCompile(`^§?(\d+(?:\.\d+)*)\.?\s`)
	quirkRe    = regexp.MustCompile(`^Q-(\d+)\s`)
	anchorRe   = regexp.MustCompile(`<a id="([^"]+)"></a>`)
	itemRe     = regexp.MustCompile(`^- \(([a-z])\)`)
	codeFenceS = "```"
)

// refDoc is what one document offers to citations and links.
type refDoc struct {
	path     string
	sections map[string]bool            // "1.3", "16"
	quirks   map[string]map[string]bool // "19" -> lettered items {"a", ...}
	anchors  map[string]bool            // heading slugs and <a id> anchors
}

// readRefDoc collects the numbered headings, quirk headings and anchors of
// a Markdown file.
func readRefDoc(t *testing.T, root, path string) *refDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	d := &refDoc{path: path, sections: map[string]bool{}, quirks: map[string]map[string]bool{}, anchors: map[string]bool{}}
	slugs := map[string]int{}
	var quirk string
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, codeFenceS) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range anchorRe.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			text := m[2]
			s := slug(text)
			if n := slugs[s]; n > 0 {
				d.anchors[fmt.Sprintf("%s-%d", s, n)] = true
			} else {
				d.anchors[s] = true
			}
			slugs[s]++
			quirk = ""
			if q := quirkRe.FindStringSubmatch(text); q != nil {
				quirk = q[1]
				d.quirks[quirk] = map[string]bool{}
			} else if s := sectionRe.FindStringSubmatch(text); s != nil {
				d.sections[s[1]] = true
			}
			continue
		}
		if quirk != "" {
			if m := itemRe.FindStringSubmatch(line); m != nil {
				d.quirks[quirk][m[1]] = true
			}
		}
	}
	return d
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces as hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestCitationsResolve checks every § and Q- citation in the repository's
// Go and Markdown files against the document it cites, and every link into
// those documents against their anchors, so that a reader can follow each
// one.
func TestCitationsResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]*refDoc{}
	for _, p := range []string{protocolDoc, otaSpec, statusSpec} {
		docs[p] = readRefDoc(t, root, p)
	}
	// Some sections and quirks that code cites must exist, or the parsing
	// above is broken and would let everything through.
	for _, s := range []string{"1.3", "4.3", "8.5", "16"} {
		if !docs[protocolDoc].sections[s] {
			t.Fatalf("%s: no heading for §%s found (headings read: %d)", protocolDoc, s, len(docs[protocolDoc].sections))
		}
	}
	if !docs[protocolDoc].quirks["19"]["h"] || !docs[statusSpec].sections["2.1"] {
		t.Fatalf("quirk Q-19 (h) or status/PROTOCOL.md §2.1 not found: the headings are not read as expected")
	}

	cited := 0
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if path != root && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if ext != ".go" && ext != ".md" {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			for _, m := range citeRe.FindAllStringSubmatchIndex(line, -1) {
				cited++
				if msg := checkCitation(docs, rel, line, m); msg != "" {
					t.Errorf("%s:%d: %s", rel, n, msg)
				}
			}
			if ext == ".md" {
				for _, m := range docLinkRe.FindAllStringSubmatch(line, -1) {
					if msg := checkLink(docs, rel, m[1], m[2]); msg != "" {
						t.Errorf("%s:%d: %s", rel, n, msg)
					}
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if cited < 100 {
		t.Errorf("found %d citations; the walk missed most of the tree", cited)
	}
}

// checkCitation returns what is wrong with the citation at m in line of
// file rel, or "".
func checkCitation(docs map[string]*refDoc, rel, line string, m []int) string {
	text := line[m[0]:m[1]]
	target := protocolDoc
	after := line[m[1]:]
	if l := selfLinkRe.FindStringSubmatch(after); l != nil {
		d := docs[rel]
		if d == nil {
			return fmt.Sprintf("%s links to #%s in its own file, which is not one of the reference documents", text, l[1])
		}
		if !d.anchors[l[1]] {
			return fmt.Sprintf("%s links to #%s, which is not an anchor of %s", text, l[1], rel)
		}
		target = rel
	} else if s := specBeforeRe.FindStringSubmatch(line[:m[0]]); s != nil {
		target = s[1]
	}
	d := docs[target]
	if m[2] >= 0 {
		sec := line[m[2]:m[3]]
		if !d.sections[sec] {
			return fmt.Sprintf("%s is not a section of %s (a bare § means %s; write %q or %q right before it to cite an extension spec)",
				text, target, protocolDoc, otaSpec+" §n", statusSpec+" §n")
		}
		return ""
	}
	q := line[m[4]:m[5]]
	items, ok := d.quirks[q]
	if !ok {
		return fmt.Sprintf("%s is not a quirk of %s", text, target)
	}
	if len(items) > 0 {
		if it := quirkItemRe.FindStringSubmatch(after); it != nil {
			letter := it[1] + it[2]
			if !items[letter] {
				return fmt.Sprintf("%s (%s): %s has no item (%s) under Q-%s", text, letter, target, letter, q)
			}
		}
	}
	return ""
}

// checkLink returns what is wrong with a link from file rel to anchor in
// the document linked as href, or "".
func checkLink(docs map[string]*refDoc, rel, href, anchor string) string {
	target := filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(rel), href)))
	d := docs[target]
	if d == nil {
		return "" // some other protocol.md; not ours to check
	}
	if !d.anchors[anchor] {
		return fmt.Sprintf("link to %s#%s: no such heading or anchor in %s", href, anchor, target)
	}
	return ""
}
