// render_test.go: whole ApplicationSets on small output roots, including
// the issue-9 defect (source.path "{{ .path }}") and its fix.

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testAppSet = `apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: tenants-eu-00
  namespace: argocd
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error"]
  generators:
  - git:
      repoURL: https://git.example/manifests.git
      revision: main
      files:
      - path: tenants-out/*/config.json
    selector:
      matchLabels:
        shard: tenants-eu-00
  syncPolicy:
    preserveResourcesOnDeletion: true
  template:
    metadata:
      name: "{{ .application }}"
      labels:
        tenant: "{{ .tenant }}"
    spec:
      project: tenants
      source:
        repoURL: https://git.example/manifests.git
        targetRevision: main
        path: "PATH_EXPR"
      destination:
        server: "{{ .cluster }}"
        namespace: "{{ .namespace }}"
`

func writeRoot(t *testing.T, appset string, tenants map[string]string) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "argocd", "applicationsets"), 0o755))
	must(os.WriteFile(filepath.Join(root, "argocd", "applicationsets", "set.yaml"), []byte(appset), 0o644))
	for id, cfg := range tenants {
		dir := filepath.Join(root, "tenants-out", id)
		must(os.MkdirAll(dir, 0o755))
		must(os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644))
		must(os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [namespace.yaml]\n"), 0o644))
		must(os.WriteFile(filepath.Join(dir, "namespace.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e-commerce-"+id+"\n"), 0o644))
	}
	return root
}

func tenantConfig(id, shard string) string {
	return `{"application": "tenant-` + id + `", "tenant": "` + id + `", "cluster": "https://kubernetes.default.svc",
 "namespace": "e-commerce-` + id + `", "path": "tenants-out/` + id + `", "shard": "` + shard + `"}`
}

func generate(t *testing.T, root string) ([]generatedApp, []error) {
	t.Helper()
	sets, err := loadAppSets(root)
	if err != nil {
		t.Fatal(err)
	}
	var apps []generatedApp
	var errs []error
	for _, as := range sets {
		a, e := generateApplications(as, walkLister{root: root}, false)
		apps = append(apps, a...)
		errs = append(errs, e...)
	}
	return apps, errs
}

func TestDefectPathMapAndFix(t *testing.T) {
	tenants := map[string]string{
		"a": tenantConfig("a", "tenants-eu-00"),
		"b": tenantConfig("b", "tenants-eu-00"),
		"c": tenantConfig("c", "tenants-eu-01"), // another shard: filtered out
	}
	// Today's template: the map is printed.
	root := writeRoot(t, strings.Replace(testAppSet, "PATH_EXPR", "{{ .path }}", 1), tenants)
	apps, errs := generate(t, root)
	if len(errs) != 0 || len(apps) != 2 {
		t.Fatalf("apps %d errs %v", len(apps), errs)
	}
	got := nestedString(apps[0].Application, "spec", "source", "path")
	if !strings.HasPrefix(got, "map[basename:a ") {
		t.Fatalf("source.path = %q, want the path map printed", got)
	}
	problems, err := checkApps(root, "tenants-out/*", apps)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"app path does not exist", "tenants-out/a: no Application", "tenants-out/c: no Application"} {
		if !strings.Contains(joined, want) {
			t.Errorf("check problems lack %q:\n%s", want, joined)
		}
	}

	// Fixed template: {{ .path.path }}.
	root = writeRoot(t, strings.Replace(testAppSet, "PATH_EXPR", "{{ .path.path }}", 1), tenants)
	apps, errs = generate(t, root)
	if len(errs) != 0 || len(apps) != 2 {
		t.Fatalf("apps %d errs %v", len(apps), errs)
	}
	assertEqual(t, "tenants-out/a", nestedString(apps[0].Application, "spec", "source", "path"))
	assertEqual(t, "tenants-out/a/config.json", apps[0].File)
	assertEqual(t, "argocd", nestedString(apps[0].Application, "metadata", "namespace"))
	assertEqual(t, "e-commerce-b", nestedString(apps[1].Application, "spec", "destination", "namespace"))
	if _, ok := apps[0].Application["metadata"].(map[string]any)["finalizers"]; ok {
		t.Error("preserveResourcesOnDeletion: no finalizer is added")
	}
	problems, err = checkApps(root, "tenants-out/*", apps)
	if err != nil {
		t.Fatal(err)
	}
	// Only tenant c (shard tenants-eu-01, which has no ApplicationSet here) is left.
	assertEqual(t, []string{"tenants-out/c: no Application has this tree as its source.path"}, problems)
}

func TestMissingKeyIsAnError(t *testing.T) {
	set := strings.Replace(testAppSet, "PATH_EXPR", "{{ .path.path }}", 1)
	root := writeRoot(t, set, map[string]string{
		"a": tenantConfig("a", "tenants-eu-00"),
		"b": `{"application": "tenant-b", "tenant": "b", "shard": "tenants-eu-00"}`,
	})
	_, errs := generate(t, root)
	if len(errs) != 1 {
		t.Fatalf("want one error, got %v", errs)
	}
	want := `tenants-out/b/config.json: failed to execute go template {{ .cluster }}: template: base:1:3: executing "base" at <.cluster>: map has no entry for key "cluster"`
	assertEqual(t, want, errs[0].Error())
}

func TestFinalizerTemplatePatchAndDuplicates(t *testing.T) {
	set := strings.Replace(testAppSet, "PATH_EXPR", "{{ .path.path }}", 1)
	set = strings.Replace(set, "  syncPolicy:\n    preserveResourcesOnDeletion: true\n", `  templatePatch: |
    metadata:
      annotations:
        patched: "{{ .tenant }}"
    spec:
      project: sneaky
      source:
        path: "{{ .path.path }}/overlay"
`, 1)
	root := writeRoot(t, set, map[string]string{"a": tenantConfig("a", "tenants-eu-00")})
	apps, errs := generate(t, root)
	if len(errs) != 0 || len(apps) != 1 {
		t.Fatalf("apps %d errs %v", len(apps), errs)
	}
	app := apps[0].Application
	assertEqual(t, []any{resourcesFinalizerName}, app["metadata"].(map[string]any)["finalizers"])
	assertEqual(t, "a", nestedString(app, "metadata", "annotations", "patched"))
	assertEqual(t, "tenants-out/a/overlay", nestedString(app, "spec", "source", "path"))
	assertEqual(t, "tenants", nestedString(app, "spec", "project")) // project cannot be patched
	assertEqual(t, "https://git.example/manifests.git", nestedString(app, "spec", "source", "repoURL"))

	// Two files yielding one name: the controller's duplicate-name error.
	root = writeRoot(t, strings.Replace(testAppSet, "PATH_EXPR", "{{ .path.path }}", 1), map[string]string{
		"a": tenantConfig("a", "tenants-eu-00"),
		"b": strings.Replace(tenantConfig("b", "tenants-eu-00"), "tenant-b", "tenant-a", 1),
	})
	_, errs = generate(t, root)
	if len(errs) != 1 || errs[0].Error() != "ApplicationSet tenants-eu-00 contains applications with duplicate name: tenant-a" {
		t.Fatalf("errs %v", errs)
	}
}

func TestGeneratorTemplateMerge(t *testing.T) {
	set := strings.Replace(testAppSet, "PATH_EXPR", "{{ .path.path }}", 1)
	set = strings.Replace(set, "      revision: main\n", "      revision: main\n      template:\n        metadata:\n          name: 'gen-{{ .tenant }}'\n        spec:\n          project: ''\n", 1)
	root := writeRoot(t, set, map[string]string{"a": tenantConfig("a", "tenants-eu-00")})
	apps, errs := generate(t, root)
	if len(errs) != 0 || len(apps) != 1 {
		t.Fatalf("apps %d errs %v", len(apps), errs)
	}
	assertEqual(t, "gen-a", appName(apps[0].Application))                           // generator template wins
	assertEqual(t, "tenants", nestedString(apps[0].Application, "spec", "project")) // empty is filled from spec.template
}
