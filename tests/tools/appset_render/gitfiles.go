// gitfiles.go owns which files a git files generator's files[].path selects.
//
// Upstream read: argoproj/argo-cd v3.5.1 (commit
// 109ca7ca71139e514114499d294a492e7910a965):
//   - applicationset/generators/git.go generateParamsForGitFiles: one
//     GetFiles call per include pattern (results merged), one per exclude
//     pattern (results deleted), file paths sorted before building params;
//   - applicationset/services/repo_service.go GetFiles -> repo-server
//     GetGitFiles (reposerver/repository/repository.go): an empty pattern
//     becomes ".", then gitClient.LsFiles(pattern, enableNewGitFileGlobbing)
//     and os.ReadFile of every listed path;
//   - util/git/client.go nativeGitClient.LsFiles: with the new globbing OFF
//     (the default: flag --enable-new-git-file-globbing / env
//     ARGOCD_APPLICATIONSET_CONTROLLER_ENABLE_NEW_GIT_FILE_GLOBBING /
//     argocd-cmd-params-cm applicationsetcontroller.enable.new.git.file.globbing,
//     all default false in cmd/argocd-applicationset-controller) it runs
//     `git ls-files --full-name -z -- <pattern>`; ON, it uses
//     doublestar.FilepathGlob (not emulated here);
//   - docs/operator-manual/applicationset/Generators-Git-File-Globbing.md:
//     the default is "very greedy": `some-path/*.yaml` also matches files in
//     any subdirectory.
//
// So the default is git's pathspec matching with no magic (git's dir.c
// match_pathspec_item, pathspec.c simple_length, wildmatch.c without
// WM_PATHNAME): a pattern matches a path when it equals it, when it is a
// leading directory of it, or when the part after the pattern's literal
// prefix wildmatches with '*', '?' and brackets all able to match '/'. The
// expectations in gitfiles_test.go come from util/git/git_test.go
// TestLsFilesForGitFileGeneratorGlobbingPatterns (the non-new-globbing rows),
// and the test also checks this matcher against the real `git ls-files`.

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// normalizePathspec turns a files[].path into the pathspec git matches,
// relative to the repository root (the repo-server's cwd for ls-files).
func normalizePathspec(pattern string) (string, error) {
	if pattern == "" {
		pattern = "." // GetGitFiles: if gitPath == "" { gitPath = "." }
	}
	if strings.HasPrefix(pattern, ":") {
		return "", fmt.Errorf("pathspec magic %q is not emulated by appset_render", pattern)
	}
	if strings.HasPrefix(pattern, "/") {
		// git resolves an absolute pathspec against the filesystem; the
		// repo-server's checkout lives in a random temp dir, so in practice
		// this fails: "fatal: <p>: '<p>' is outside repository".
		return "", fmt.Errorf("fatal: %s: '%s' is outside repository", pattern, pattern)
	}
	trailingSlash := strings.HasSuffix(pattern, "/")
	var out []string
	for _, seg := range strings.Split(pattern, "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			if len(out) == 0 {
				return "", fmt.Errorf("fatal: %s: '%s' is outside repository", pattern, pattern)
			}
			out = out[:len(out)-1]
		default:
			out = append(out, seg)
		}
	}
	res := strings.Join(out, "/")
	if trailingSlash && res != "" {
		res += "/"
	}
	return res, nil
}

// isGlobSpecial mirrors git's is_glob_special (sane-ctype GIT_GLOB_SPECIAL).
func isGlobSpecial(c byte) bool {
	return c == '*' || c == '?' || c == '[' || c == '\\'
}

// simpleLength mirrors pathspec.c simple_length: the literal prefix length.
func simpleLength(match string) int {
	for i := 0; i < len(match); i++ {
		if isGlobSpecial(match[i]) {
			return i
		}
	}
	return len(match)
}

// pathspecMatch mirrors dir.c match_pathspec_item for a plain (no magic)
// pathspec and a file (not a directory) name.
func pathspecMatch(match, name string) bool {
	if match == "" {
		return true // "If the match was just the prefix, we matched"
	}
	if len(match) <= len(name) && name[:len(match)] == match {
		if len(match) == len(name) {
			return true
		}
		if match[len(match)-1] == '/' || name[len(match)] == '/' {
			return true
		}
	}
	nowild := simpleLength(match)
	if nowild < len(match) {
		if !strings.HasPrefix(name, match[:nowild]) {
			return false
		}
		return wildmatch(match[nowild:], name[nowild:])
	}
	return false
}

// wildmatch mirrors git's wildmatch.c dowild() with flags == 0 (no
// WM_PATHNAME, no WM_CASEFOLD), which is what git_fnmatch uses for a pathspec
// without the :(glob) magic. Without WM_PATHNAME, "**" is just "*" and every
// wildcard matches '/'.
func wildmatch(pattern, text string) bool {
	return dowild(pattern, text) == wmMatch
}

const (
	wmMatch = iota
	wmNoMatch
	wmAbortAll
)

func dowild(p, text string) int {
	ti := 0
	for pi := 0; pi < len(p); pi++ {
		pch := p[pi]
		if ti >= len(text) && pch != '*' {
			return wmAbortAll
		}
		switch pch {
		case '\\':
			pi++
			if pi >= len(p) {
				return wmAbortAll
			}
			if text[ti] != p[pi] {
				return wmNoMatch
			}
		case '?':
			// matches any single character, '/' included
		case '*':
			for pi+1 < len(p) && p[pi+1] == '*' {
				pi++
			}
			if pi+1 == len(p) {
				return wmMatch // trailing star matches the rest, '/' included
			}
			for k := ti; k <= len(text); k++ {
				if r := dowild(p[pi+1:], text[k:]); r != wmNoMatch {
					return r
				}
			}
			return wmAbortAll
		case '[':
			ok, next, valid := matchBracket(p, pi, text[ti])
			if !valid {
				return wmAbortAll
			}
			if !ok {
				return wmNoMatch
			}
			pi = next
		default:
			if text[ti] != pch {
				return wmNoMatch
			}
		}
		ti++
	}
	if ti < len(text) {
		return wmNoMatch
	}
	return wmMatch
}

// matchBracket matches one character against the bracket expression at
// p[start] == '['. It returns whether it matched, the index of the closing
// ']' and whether the expression was well formed.
func matchBracket(p string, start int, c byte) (bool, int, bool) {
	i := start + 1
	if i >= len(p) {
		return false, 0, false
	}
	negated := false
	if p[i] == '!' || p[i] == '^' {
		negated = true
		i++
	}
	matched := false
	var prev byte
	havePrev := false
	first := true
	for {
		if i >= len(p) {
			return false, 0, false
		}
		ch := p[i]
		if ch == ']' && !first {
			break
		}
		first = false
		switch {
		case ch == '\\':
			i++
			if i >= len(p) {
				return false, 0, false
			}
			if p[i] == c {
				matched = true
			}
			prev, havePrev = p[i], true
		case ch == '-' && havePrev && i+1 < len(p) && p[i+1] != ']':
			i++
			hi := p[i]
			if hi == '\\' {
				i++
				if i >= len(p) {
					return false, 0, false
				}
				hi = p[i]
			}
			if prev <= c && c <= hi {
				matched = true
			}
			havePrev = false
		case ch == '[' && i+1 < len(p) && p[i+1] == ':':
			// git scans to the next ']'; a class only when ":]" ends it.
			close := strings.IndexByte(p[i+2:], ']')
			if close < 0 {
				return false, 0, false
			}
			nameEnd := i + 2 + close // index of ']'
			if close < 1 || p[nameEnd-1] != ':' {
				// Didn't find ":]": a literal '[', parsing resumes after it.
				if c == '[' {
					matched = true
				}
				prev, havePrev = '[', true
				break
			}
			ok, known := matchClass(p[i+2:nameEnd-1], c)
			if !known {
				return false, 0, false // malformed [:class:]
			}
			if ok {
				matched = true
			}
			i = nameEnd
			havePrev = false
		default:
			if ch == c {
				matched = true
			}
			prev, havePrev = ch, true
		}
		i++
	}
	return matched != negated, i, true
}

func matchClass(class string, c byte) (bool, bool) {
	isUpper := c >= 'A' && c <= 'Z'
	isLower := c >= 'a' && c <= 'z'
	isDigit := c >= '0' && c <= '9'
	switch class {
	case "alnum":
		return isUpper || isLower || isDigit, true
	case "alpha":
		return isUpper || isLower, true
	case "blank":
		return c == ' ' || c == '\t', true
	case "cntrl":
		return c < 32 || c == 127, true
	case "digit":
		return isDigit, true
	case "graph":
		return c > 32 && c < 127, true
	case "lower":
		return isLower, true
	case "print":
		return c >= 32 && c < 127, true
	case "punct":
		return c > 32 && c < 127 && !isUpper && !isLower && !isDigit, true
	case "space":
		return c == ' ' || (c >= '\t' && c <= '\r'), true
	case "upper":
		return isUpper, true
	case "xdigit":
		return isDigit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'), true
	}
	return false, false
}

// fileLister lists the repository files one pathspec selects, as
// repository-relative slash paths.
type fileLister interface {
	lsFiles(pattern string) ([]string, error)
	readFile(rel string) ([]byte, error)
}

// walkLister emulates `git ls-files` on a directory tree that may not be a
// git work tree: every regular file and symlink below root (".git"
// directories skipped) is treated as tracked.
type walkLister struct{ root string }

func (w walkLister) lsFiles(pattern string) ([]string, error) {
	match, err := normalizePathspec(pattern)
	if err != nil {
		return nil, err
	}
	// Every match starts with the pattern's literal prefix, so only its
	// directory needs walking (keeps `tenants-out/*/config.json` away from
	// build output elsewhere in the tree).
	literal := match[:simpleLength(match)]
	startDir := ""
	if i := strings.LastIndex(literal, "/"); i >= 0 {
		startDir = literal[:i]
	}
	start := filepath.Join(w.root, filepath.FromSlash(startDir))
	if _, err := os.Lstat(start); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var files []string
	err = filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, err := filepath.Rel(w.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if pathspecMatch(match, rel) {
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func (w walkLister) readFile(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(w.root, filepath.FromSlash(rel)))
}

// gitLister runs the command the repo-server runs, in root, which must be the
// top of a git work tree. It lists the index (tracked files), like the
// repo-server's fresh checkout of the generator's revision would.
type gitLister struct{ root string }

func (g gitLister) lsFiles(pattern string) ([]string, error) {
	if pattern == "" {
		pattern = "."
	}
	cmd := exec.Command("git", "ls-files", "--full-name", "-z", "--", pattern)
	cmd.Dir = g.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files %q: %v: %s", pattern, err, strings.TrimSpace(stderr.String()))
	}
	ss := strings.Split(string(out), "\x00")
	return ss[:len(ss)-1], nil
}

func (g gitLister) readFile(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(g.root, filepath.FromSlash(rel)))
}

func checkGitTopLevel(root string) error {
	cmd := exec.Command("git", "rev-parse", "--show-toplevel")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("-git: %s is not in a git work tree: %v", root, err)
	}
	top, err := filepath.EvalSymlinks(strings.TrimSpace(string(out)))
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	abs, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if top != abs {
		return fmt.Errorf("-git: %s is not the top of its git work tree (%s)", root, top)
	}
	return nil
}

// selectGitFiles mirrors generateParamsForGitFiles' file selection: union of
// the include patterns' results minus every exclude pattern's results,
// sorted. It returns the contents too, as GetFiles does.
func selectGitFiles(lister fileLister, items []gitFileItem) ([]string, map[string][]byte, error) {
	contents := map[string][]byte{}
	for _, it := range items {
		if it.Exclude {
			continue
		}
		files, err := lister.lsFiles(it.Path)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range files {
			data, err := lister.readFile(f)
			if err != nil {
				return nil, nil, fmt.Errorf("unable to read files. pattern %s: %w", it.Path, err)
			}
			contents[f] = data
		}
	}
	for _, it := range items {
		if !it.Exclude {
			continue
		}
		files, err := lister.lsFiles(it.Path)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range files {
			delete(contents, f)
		}
	}
	paths := make([]string, 0, len(contents))
	for p := range contents {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, contents, nil
}

type gitFileItem struct {
	Path    string
	Exclude bool
}
