// gitfiles_test.go: file selection with the default (old) globbing.
// upstream: argo-cd v3.5.1 util/git/git_test.go
// TestLsFilesForGitFileGeneratorGlobbingPatterns, rows with
// isNewGlobbingEnabled == false, and TestLsFiles "Old globbing with symlinks
// and subdir". When git is installed the matcher is also compared with the
// real `git ls-files` on the same tree.

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

var upstreamGlobFiles = []string{
	"cluster-charts/cluster1/mychart/charts/mysubchart/values.yaml",
	"cluster-charts/cluster1/mychart/values.yaml",
	"cluster-charts/cluster1/myotherchart/values.yaml",
	"cluster-charts/cluster2/values.yaml",
	"some-path/values.yaml",
	"some-path/staging/values.yaml",
	"cluster-config/engineering/production/config.json",
	"cluster-config/engineering/dev/config.json",
	"p1/p2/config.json",
	"p1/app2/config.json",
	"p1/app3/config.json",
	"p1/config.json",
}

var extraGlobFiles = []string{
	"tenants-out/a/config.json",
	"tenants-out/a/sub/config.json",
	"tenants-out/b/config.json",
	"tenants-out/shard-00/c/config.json",
	"tenants-out/x?y/config.json",
	"tenants-out/Z9/config.json",
	"tenants-outside/config.json",
	"a.yaml",
}

func makeTree(t *testing.T, files []string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func TestOldGlobbingUpstreamTable(t *testing.T) {
	root := makeTree(t, upstreamGlobFiles)
	cases := []struct {
		pattern string
		want    []string
	}{
		{"**/config.json", []string{
			"cluster-config/engineering/production/config.json", "cluster-config/engineering/dev/config.json",
			"p1/config.json", "p1/p2/config.json", "p1/app2/config.json", "p1/app3/config.json"}},
		{"some-path/*.yaml", []string{"some-path/values.yaml", "some-path/staging/values.yaml"}},
		{"p1/**/config.json", []string{"p1/p2/config.json", "p1/app2/config.json", "p1/app3/config.json"}},
		{"cluster-config/**/config.json", []string{"cluster-config/engineering/dev/config.json", "cluster-config/engineering/production/config.json"}},
		{"cluster-config/*/dev/config.json", []string{"cluster-config/engineering/dev/config.json"}},
		{"cluster-charts/*/*/values.yaml", []string{
			"cluster-charts/cluster1/mychart/values.yaml", "cluster-charts/cluster1/myotherchart/values.yaml",
			"cluster-charts/cluster1/mychart/charts/mysubchart/values.yaml"}},
		{"cluster-charts/*/values.yaml", []string{
			"cluster-charts/cluster2/values.yaml", "cluster-charts/cluster1/mychart/values.yaml",
			"cluster-charts/cluster1/myotherchart/values.yaml", "cluster-charts/cluster1/mychart/charts/mysubchart/values.yaml"}},
	}
	lister := walkLister{root: root}
	for _, tc := range cases {
		got, err := lister.lsFiles(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sorted(tc.want), sorted(got)) {
			t.Errorf("%s:\nwant %v\ngot  %v", tc.pattern, sorted(tc.want), sorted(got))
		}
	}
}

// The pattern provisio emits today is greedy too: a config.json anywhere
// below a tenant tree is a parameter file.
func TestOldGlobbingTenantPattern(t *testing.T) {
	root := makeTree(t, extraGlobFiles)
	got, err := walkLister{root: root}.lsFiles("tenants-out/*/config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tenants-out/Z9/config.json", "tenants-out/a/config.json", "tenants-out/a/sub/config.json",
		"tenants-out/b/config.json", "tenants-out/shard-00/c/config.json", "tenants-out/x?y/config.json"}
	assertEqual(t, want, got)
}

func TestPathspecMatchBasics(t *testing.T) {
	cases := []struct {
		match, name string
		want        bool
	}{
		{"", "anything/at/all", true},
		{"tenants-out", "tenants-out/a/config.json", true},  // leading directory
		{"tenants-out/", "tenants-out/a/config.json", true}, // leading directory
		{"tenants-ou", "tenants-out/a/config.json", false},  // not a directory boundary
		{"tenants-out/a/config.json", "tenants-out/a/config.json", true},
		{"tenants-out/?/config.json", "tenants-out/a/config.json", true},
		{"tenants-out/[ab]/config.json", "tenants-out/b/config.json", true},
		{"tenants-out/[!ab]/config.json", "tenants-out/b/config.json", false},
		{"tenants-out/[[:upper:]]*/config.json", "tenants-out/Z9/config.json", true},
		{`tenants-out/x\?y/config.json`, "tenants-out/x?y/config.json", true},
		{`tenants-out/x\?y/config.json`, "tenants-out/xay/config.json", false},
		{"tenants-out/*", "tenants-out/a/sub/config.json", true},
		{"*.json", "tenants-out/a/config.json", true},
		{"tenants-out/a?sub/config.json", "tenants-out/a/sub/config.json", true}, // '?' matches '/'
	}
	for _, tc := range cases {
		if got := pathspecMatch(tc.match, tc.name); got != tc.want {
			t.Errorf("pathspecMatch(%q, %q) = %v", tc.match, tc.name, got)
		}
	}
}

func TestNormalizePathspec(t *testing.T) {
	for in, want := range map[string]string{"": "", ".": "", "./tenants-out/*/config.json": "tenants-out/*/config.json",
		"a//b/../c/": "a/c/"} {
		got, err := normalizePathspec(in)
		if err != nil || got != want {
			t.Errorf("normalizePathspec(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/etc/passwd", "../x", ":(glob)*"} {
		if _, err := normalizePathspec(bad); err == nil {
			t.Errorf("normalizePathspec(%q) must fail", bad)
		}
	}
}

// Include patterns are unioned, then every exclude pattern removes its
// matches, whatever the order (git.go generateParamsForGitFiles).
func TestSelectGitFilesExclude(t *testing.T) {
	root := makeTree(t, extraGlobFiles)
	items := []gitFileItem{
		{Path: "tenants-out/shard-00/*", Exclude: true},
		{Path: "tenants-out/*/config.json"},
		{Path: "tenants-out/a/sub/config.json", Exclude: true},
		{Path: "a.yaml"},
	}
	paths, contents, err := selectGitFiles(walkLister{root: root}, items)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.yaml", "tenants-out/Z9/config.json", "tenants-out/a/config.json", "tenants-out/b/config.json", "tenants-out/x?y/config.json"}
	assertEqual(t, want, paths)
	if string(contents["a.yaml"]) != "{}" {
		t.Error("contents not read")
	}
}

// Compare with the real `git ls-files` (what the repo-server runs).
func TestMatcherAgreesWithGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: cross-check skipped")
	}
	files := append(append([]string(nil), upstreamGlobFiles...), extraGlobFiles...)
	root := makeTree(t, files)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	patterns := []string{
		"**/config.json", "some-path/*.yaml", "p1/**/config.json", "cluster-config/**/config.json",
		"cluster-config/*/dev/config.json", "cluster-charts/*/*/values.yaml", "cluster-charts/*/values.yaml",
		"tenants-out/*/config.json", "tenants-out/?/config.json", "tenants-out/[ab]/config.json",
		"tenants-out/[!a]*/config.json", "tenants-out/[[:upper:]]*/config.json", `tenants-out/x\?y/config.json`,
		"tenants-out", "tenants-out/", "tenants-ou", "*.yaml", "*", "p1", "p1/config.json", "./p1/*",
		"tenants-out/shard-00/*/config.json", "tenants-out*", "[tc]*/*/config.json", "tenants-out/a?sub/*",
		"tenants-out/[a-b]/config.json", "tenants-out/[[:alpha:]]/*", "**", "tenants-out/*/*/config.json",
		"no-such-dir/*", "tenants-out/[]a]/config.json", "p1/*/", "some-path/*/values.yaml",
	}
	for _, p := range patterns {
		want, err := gitLister{root: root}.lsFiles(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := walkLister{root: root}.lsFiles(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sorted(want), sorted(got)) {
			t.Errorf("%q:\ngit  %v\nours %v", p, sorted(want), sorted(got))
		}
	}
}
