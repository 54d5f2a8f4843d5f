// Package skiplist reads the skip lists of the conformance runners
// (test/critest's and test/nodee2e's): one "handlers | regexp | reason" per
// line, handlers "all" or a comma-separated list, the regexp matched
// against a spec's full text. Every entry must give its reason; blank lines
// and #-comments are ignored.
package skiplist

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Entry is one line: the handlers it applies to, the specs and why.
type Entry struct {
	Handlers []string
	Regexp   string
	Reason   string
	re       *regexp.Regexp
}

// Read reads a skip list; a line without a reason or with a bad regexp is
// an error naming the file and line.
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, " | ", 3)
		if len(parts) != 3 || strings.TrimSpace(parts[2]) == "" {
			return nil, fmt.Errorf("%s:%d: want \"handlers | regexp | reason\", got %q", path, ln, line)
		}
		re, err := regexp.Compile(strings.TrimSpace(parts[1]))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, ln, err)
		}
		out = append(out, Entry{Handlers: strings.Split(strings.TrimSpace(parts[0]), ","), Regexp: re.String(), Reason: strings.TrimSpace(parts[2]), re: re})
	}
	return out, sc.Err()
}

// Applies reports whether the entry applies to a handler.
func (e Entry) Applies(handler string) bool {
	for _, h := range e.Handlers {
		if h == "all" || h == handler {
			return true
		}
	}
	return false
}

// Match reports whether the entry's regexp matches a spec's text.
func (e Entry) Match(name string) bool { return e.re.MatchString(name) }

// For is the entries that apply to a handler.
func For(entries []Entry, handler string) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Applies(handler) {
			out = append(out, e)
		}
	}
	return out
}
