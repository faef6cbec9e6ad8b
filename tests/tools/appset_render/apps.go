// apps.go owns plain Applications (-apps GLOB): Applications provisio writes
// itself, with no generator. Argo CD does not template them (a literal `{{` in
// one is therefore a defect, reported as the controller-equivalent error), so
// they are taken as they are and join the generated Applications for -check.
// For a tree whose Application has no destination namespace, -check requires
// every namespaced object of the tree (every kind but Namespace, following the
// kustomization's resources) to name its namespace: Argo CD has no namespace to
// give it.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// loadPlainApps reads every `kind: Application` document of the files matching
// glob (relative to root).
func loadPlainApps(root, glob string) ([]generatedApp, error) {
	matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(glob)))
	if err != nil {
		return nil, fmt.Errorf("-apps %q: %w", glob, err)
	}
	sort.Strings(matches)
	var apps []generatedApp
	for _, m := range matches {
		rel, err := filepath.Rel(root, m)
		if err != nil {
			return nil, err
		}
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		docs, err := decodeYAMLDocuments(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		for _, d := range docs {
			if d["kind"] != "Application" {
				continue
			}
			if s := findTemplate(d); s != "" {
				return nil, fmt.Errorf("%s: Application %s holds %q: Argo CD does not template a plain Application", rel, appName(d), s)
			}
			apps = append(apps, generatedApp{File: rel, Application: d})
		}
	}
	return apps, nil
}

// findTemplate returns the first string of v containing `{{`, or "".
func findTemplate(v any) string {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "{{") {
			return x
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s := findTemplate(x[k]); s != "" {
				return s
			}
		}
	case []any:
		for _, e := range x {
			if s := findTemplate(e); s != "" {
				return s
			}
		}
	}
	return ""
}

// unnamespaced lists the namespaced objects of the tree at dir (following
// kustomization.yaml's resources, files and directories) that name no namespace.
func unnamespaced(dir string) ([]string, error) {
	var missing []string
	var walk func(d string) error
	walk = func(d string) error {
		data, err := os.ReadFile(filepath.Join(d, "kustomization.yaml"))
		if err != nil {
			return err
		}
		docs, err := decodeYAMLDocuments(data)
		if err != nil {
			return err
		}
		for _, k := range docs {
			res, _ := k["resources"].([]any)
			for _, r := range res {
				name, _ := r.(string)
				p := filepath.Join(d, filepath.FromSlash(name))
				st, err := os.Stat(p)
				if err != nil {
					return err
				}
				if st.IsDir() {
					if err := walk(p); err != nil {
						return err
					}
					continue
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				objs, err := decodeYAMLDocuments(b)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				for _, o := range objs {
					if o["kind"] == "Namespace" {
						continue
					}
					if nestedString(o, "metadata", "namespace") == "" {
						missing = append(missing, fmt.Sprintf("%v %s (%s)", o["kind"], nestedString(o, "metadata", "name"), name))
					}
				}
			}
		}
		return nil
	}
	err := walk(dir)
	return missing, err
}
