// Command appset_render renders provisio's Argo CD ApplicationSets the way the
// ApplicationSet controller would (git files generator, goTemplate mode) and
// prints the generated Applications as JSON. With -check it also asserts what
// issue 9 asks of the output: every tenant tree is the source of exactly one
// Application, whose source.path exists, whose destination namespace is the
// tree's namespace and whose name is a valid object name.
//
// Usage: appset_render [-git] [-params] [-check] [-trees GLOB,…] [-apps GLOB] OUTPUT_ROOT
//
// OUTPUT_ROOT holds argocd/applicationsets/*.yaml and the trees the
// generators read (tenants-out/...), laid out as the manifests repository.
//
// Exit status: 0 ok; 1 the controller would report an error (the message is
// upstream's, prefixed with the ApplicationSet's name; such an ApplicationSet
// generates nothing and is left out of the JSON); 2 usage or I/O error;
// 3 -check found a defect.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("appset_render", flag.ContinueOnError)
	useGit := fs.Bool("git", false, "list files with `git ls-files` in OUTPUT_ROOT (must be a work tree top) instead of walking the directory")
	withParams := fs.Bool("params", false, "include each Application's generator parameters in the output")
	check := fs.Bool("check", false, "assert the issue-9 properties of the generated Applications")
	trees := fs.String("trees", "tenants-out/*", "globs (comma-separated; filepath.Match per segment, relative to OUTPUT_ROOT) naming the trees for -check")
	plainApps := fs.String("apps", "", "glob (relative to OUTPUT_ROOT) of files holding plain Applications to check with the generated ones, e.g. 'argocd/platform-*.yaml'")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: appset_render [-git] [-params] [-check] [-trees GLOB,…] [-apps GLOB] OUTPUT_ROOT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	root := fs.Arg(0)

	var lister fileLister = walkLister{root: root}
	if *useGit {
		if err := checkGitTopLevel(root); err != nil {
			fmt.Fprintln(os.Stderr, "appset_render:", err)
			return 2
		}
		lister = gitLister{root: root}
	}

	sets, err := loadAppSets(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "appset_render:", err)
		return 2
	}

	status := 0
	apps := []generatedApp{}
	for _, as := range sets {
		got, errs := generateApplications(as, lister, *withParams)
		if len(errs) > 0 {
			for _, e := range errs {
				fmt.Fprintf(os.Stderr, "ApplicationSet %s (%s): %v\n", as.Name, as.File, e)
			}
			status = 1
			continue // the controller applies nothing for this ApplicationSet
		}
		apps = append(apps, got...)
	}
	if *plainApps != "" {
		plain, err := loadPlainApps(root, *plainApps)
		if err != nil {
			fmt.Fprintln(os.Stderr, "appset_render:", err)
			status = 1
		} else {
			apps = append(apps, plain...)
		}
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(apps); err != nil {
		fmt.Fprintln(os.Stderr, "appset_render:", err)
		return 2
	}

	if *check && status == 0 {
		problems, err := checkApps(root, *trees, apps)
		if err != nil {
			fmt.Fprintln(os.Stderr, "appset_render:", err)
			return 2
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "check:", p)
		}
		if len(problems) > 0 {
			return 3
		}
	}
	return status
}

// loadAppSets reads every ApplicationSet document under argocd/applicationsets.
func loadAppSets(root string) ([]*appSet, error) {
	dir := filepath.Join(root, "argocd", "applicationsets")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var sets []*appSet
	for _, n := range names {
		rel := filepath.ToSlash(filepath.Join("argocd", "applicationsets", n))
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		docs, err := decodeYAMLDocuments(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		for _, d := range docs {
			if d["kind"] != "ApplicationSet" {
				continue
			}
			as, err := parseAppSet(rel, d)
			if err != nil {
				return nil, err
			}
			sets = append(sets, as)
		}
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("no ApplicationSet found under %s", dir)
	}
	return sets, nil
}
