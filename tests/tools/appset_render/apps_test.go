package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, root, rel, text string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A plain Application is checked like a generated one; with no destination
// namespace, every namespaced object of its tree must name one.
func TestPlainApplications(t *testing.T) {
	root := t.TempDir()
	write(t, root, "argocd/platform-applications.yaml", `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: platform-namespaces-dev, namespace: argocd}
spec:
  project: platform
  source: {repoURL: r, targetRevision: main, path: platform-out/namespaces/dev}
  destination: {server: https://kubernetes.default.svc}
`)
	write(t, root, "platform-out/namespaces/dev/kustomization.yaml", "resources:\n- a/namespace.yaml\n- a/quota.yaml\n")
	write(t, root, "platform-out/namespaces/dev/a/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a-dev}\n")
	write(t, root, "platform-out/namespaces/dev/a/quota.yaml", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: a-dev}\n")
	apps, err := loadPlainApps(root, "argocd/platform-*.yaml")
	if err != nil || len(apps) != 1 {
		t.Fatalf("%v %v", apps, err)
	}
	problems, err := checkApps(root, "platform-out/namespaces/*", apps)
	if err != nil || len(problems) != 0 {
		t.Fatalf("%v %v", problems, err)
	}
	// An object without namespace is a defect.
	write(t, root, "platform-out/namespaces/dev/a/quota.yaml", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\n")
	problems, _ = checkApps(root, "platform-out/namespaces/*", apps)
	if len(problems) != 1 || !strings.Contains(problems[0], "ResourceQuota q (a/quota.yaml) names none") {
		t.Fatalf("%v", problems)
	}
	// A template in a plain Application is a defect: nothing renders it.
	write(t, root, "argocd/platform-applications.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x, namespace: argocd}\nspec: {source: {path: '{{ .path.path }}'}}\n")
	if _, err := loadPlainApps(root, "argocd/platform-*.yaml"); err == nil || !strings.Contains(err.Error(), "does not template") {
		t.Fatalf("%v", err)
	}
}
