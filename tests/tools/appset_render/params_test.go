// params_test.go: parameter construction and the post-selector. Expected
// values marked "upstream:" are copied from argo-cd v3.5.1 tests:
// applicationset/generators/git_test.go (Test_generateParamsFromGitFile,
// TestGitGenerateParamsFromFilesGoTemplate) and
// applicationset/generators/generator_spec_processor_test.go
// (TestMatchValuesGoTemplate, TestTransFormGoTemplate).

package main

import (
	"reflect"
	"strings"
	"testing"
)

func pathFacts(dir, file string, segments ...string) map[string]any {
	return map[string]any{
		"path":               dir,
		"basename":           segments[len(segments)-1],
		"filename":           file,
		"basenameNormalized": sanitizeName(segments[len(segments)-1]),
		"filenameNormalized": sanitizeName(file),
		"segments":           segments,
	}
}

func mustParams(t *testing.T, file string, content string, values map[string]string, prefix string) []map[string]any {
	t.Helper()
	got, err := generateParamsFromGitFile(file, []byte(content), values, nil, prefix)
	if err != nil {
		t.Fatalf("generateParamsFromGitFile: %v", err)
	}
	return got
}

func assertEqual(t *testing.T, want, got any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("mismatch\nwant: %#v\ngot:  %#v", want, got)
	}
}

// upstream: Test_generateParamsFromGitFile "file parameters are added to
// params with go template".
func TestParamsNestedObjectAndValues(t *testing.T) {
	got := mustParams(t, "path/dir/file_name.yaml", "\nfoo:\n  bar: baz\n",
		map[string]string{"somekey": "{{.path.basename}}"}, "")
	want := []map[string]any{{
		"values": map[string]string{"somekey": "dir"},
		"foo":    map[string]any{"bar": "baz"},
		"path": map[string]any{
			"path": "path/dir", "basename": "dir", "filename": "file_name.yaml",
			"basenameNormalized": "dir", "filenameNormalized": "file-name.yaml",
			"segments": []string{"path", "dir"},
		},
	}}
	assertEqual(t, want, got)
}

// upstream: Test_generateParamsFromGitFile "path parameter are prefixed with
// go template" and "... and values".
func TestParamsPathParamPrefix(t *testing.T) {
	got := mustParams(t, "path/dir/file_name.yaml", "\nfoo:\n  bar: baz\n",
		map[string]string{"somekey": "{{.myRepo.path.basename}}"}, "myRepo")
	want := []map[string]any{{
		"foo": map[string]any{"bar": "baz"},
		"myRepo": map[string]any{"path": map[string]any{
			"path": "path/dir", "basename": "dir", "filename": "file_name.yaml",
			"basenameNormalized": "dir", "filenameNormalized": "file-name.yaml",
			"segments": []string{"path", "dir"},
		}},
		"values": map[string]string{"somekey": "dir"},
	}}
	assertEqual(t, want, got)
}

// upstream: Test_generateParamsFromGitFile "empty file returns path
// parameters" (flat mode there; in goTemplate mode the same file gives the
// path map alone).
func TestParamsEmptyFile(t *testing.T) {
	got := mustParams(t, "path/dir/file_name.yaml", "", nil, "")
	want := []map[string]any{{"path": pathFacts("path/dir", "file_name.yaml", "path", "dir")}}
	assertEqual(t, want, got)
}

// upstream: TestGitGenerateParamsFromFilesGoTemplate "happy flow" (numbers
// become float64 through sigs.k8s.io/yaml).
func TestParamsJSONNumbersAndNesting(t *testing.T) {
	content := `{
   "cluster": {"owner": "john.doe@example.com", "name": "production", "address": "https://kubernetes.default.svc"},
   "key1": "val1",
   "key2": {"key2_1": "val2_1", "key2_2": {"key2_2_1": "val2_2_1"}},
   "key3": 123
}`
	got := mustParams(t, "cluster-config/production/config.json", content, nil, "")
	want := []map[string]any{{
		"cluster": map[string]any{"owner": "john.doe@example.com", "name": "production", "address": "https://kubernetes.default.svc"},
		"key1":    "val1",
		"key2":    map[string]any{"key2_1": "val2_1", "key2_2": map[string]any{"key2_2_1": "val2_2_1"}},
		"key3":    float64(123),
		"path":    pathFacts("cluster-config/production", "config.json", "cluster-config", "production"),
	}}
	assertEqual(t, want, got)
}

// upstream: TestGitGenerateParamsFromFilesGoTemplate "test JSON array" and
// "test YAML array": one parameter set per element, same path facts.
func TestParamsArrays(t *testing.T) {
	for _, tc := range []struct{ file, content string }{
		{"cluster-config/production/config.json", `[{"cluster": {"name": "production", "inner": {"one": "two"}}}, {"cluster": {"name": "staging"}}]`},
		{"cluster-config/production/config.yaml", "- cluster:\n    name: production\n    inner:\n      one: two\n- cluster:\n    name: staging"},
	} {
		got := mustParams(t, tc.file, tc.content, nil, "")
		file := tc.file[strings.LastIndex(tc.file, "/")+1:]
		facts := pathFacts("cluster-config/production", file, "cluster-config", "production")
		want := []map[string]any{
			{"cluster": map[string]any{"name": "production", "inner": map[string]any{"one": "two"}}, "path": facts},
			{"cluster": map[string]any{"name": "staging"}, "path": facts},
		}
		assertEqual(t, want, got)
	}
}

// Arrays inside an object stay []any and are indexable in templates.
func TestParamsNestedArrays(t *testing.T) {
	got := mustParams(t, "t/a/config.json", `{"hosts": ["a.example", "b.example"], "n": [1, {"x": true}]}`, nil, "")
	assertEqual(t, []any{"a.example", "b.example"}, got[0]["hosts"])
	assertEqual(t, []any{float64(1), map[string]any{"x": true}}, got[0]["n"])
	out, err := replace(`{{ index .hosts 1 }} {{ len .n }}`, got[0], []string{"missingkey=error"})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "b.example 2", out)
}

// upstream: TestGitGenerateParamsFromFilesGoTemplate "test invalid JSON file
// returns error" (the part produced by generateParamsFromGitFile).
func TestParamsInvalidFile(t *testing.T) {
	_, err := generateParamsFromGitFile("cluster-config/production/config.json", []byte("invalid json file"), nil, nil, "")
	want := "unable to parse file: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go value of type []map[string]interface {}"
	if err == nil || err.Error() != want {
		t.Fatalf("want %q, got %v", want, err)
	}
}

// The defect of issue 9: a config.json "path" key is replaced by the path
// facts map, so "{{ .path }}" prints the map and "{{ .path.path }}" the dir.
func TestParamsFilePathKeyIsReplaced(t *testing.T) {
	got := mustParams(t, "tenants-out/abc/config.json", `{"path": "tenants-out/abc", "namespace": "e-commerce-abc"}`, nil, "")
	assertEqual(t, pathFacts("tenants-out/abc", "config.json", "tenants-out", "abc"), got[0]["path"])
	s, err := replace("{{ .path }}", got[0], []string{"missingkey=error"})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "map[basename:abc basenameNormalized:abc filename:config.json filenameNormalized:config.json path:tenants-out/abc segments:[tenants-out abc]]", s)
	s, err = replace("{{ .path.path }}", got[0], []string{"missingkey=error"})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "tenants-out/abc", s)
}

// With pathParamPrefix the file's own "path" key survives, and a file key
// equal to the prefix is the one replaced.
func TestParamsPrefixKeepsFilePathKey(t *testing.T) {
	got := mustParams(t, "tenants-out/abc/config.json", `{"path": "tenants-out/abc", "git": "lost"}`, nil, "git")
	assertEqual(t, "tenants-out/abc", got[0]["path"])
	assertEqual(t, map[string]any{"path": pathFacts("tenants-out/abc", "config.json", "tenants-out", "abc")}, got[0]["git"])
}

// values are rendered against the file's keys and path facts; with an empty
// values map a file's own "values" key is kept, otherwise replaced.
func TestParamsValues(t *testing.T) {
	got := mustParams(t, "t/a/config.json", `{"values": {"x": "from-file"}}`, map[string]string{}, "")
	assertEqual(t, map[string]any{"x": "from-file"}, got[0]["values"])
	got = mustParams(t, "t/a/config.json", `{"values": {"x": "from-file"}, "ns": "n1"}`, map[string]string{"ns": "{{ .ns }}-{{ .path.basename }}"}, "")
	assertEqual(t, map[string]string{"ns": "n1-a"}, got[0]["values"])
	_, err := generateParamsFromGitFile("t/a/config.json", []byte(`{}`), map[string]string{"x": "{{ .nope }}"}, []string{"missingkey=error"}, "")
	want := `failed to append templated values: failed to replace templated string: failed to replace templated string with rendered values: failed to execute go template {{ .nope }}: template: base:1:3: executing "base" at <.nope>: map has no entry for key "nope"`
	if err == nil || err.Error() != want {
		t.Fatalf("want %q, got %v", want, err)
	}
}

// YAML 1.1 and float64 conversions of sigs.k8s.io/yaml.
func TestParamsYAMLScalars(t *testing.T) {
	got := mustParams(t, "t/a/config.yaml", "enabled: yes\nbig: 1000000\nver: 1.10\n1: one\n", nil, "")
	assertEqual(t, true, got[0]["enabled"])
	assertEqual(t, "one", got[0]["1"])
	s, err := replace("{{ .big }} {{ .ver }}", got[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "1e+06 1.1", s)
}

func TestFlattenParameters(t *testing.T) {
	p := mustParams(t, "tenants-out/abc/config.json", `{"shard": "s-00", "n": 3, "list": ["x", {"y": "z"}], "nested": {"k": null}}`,
		map[string]string{"env": "prod"}, "")[0]
	got := flattenParameters(p)
	want := map[string]string{
		"shard":                   "s-00",
		"n":                       "3",
		"list.0":                  "x",
		"list.1.y":                "z",
		"nested.k":                "<nil>",
		"values.env":              "prod",
		"path.path":               "tenants-out/abc",
		"path.basename":           "abc",
		"path.filename":           "config.json",
		"path.basenameNormalized": "abc",
		"path.filenameNormalized": "config.json",
		"path.segments":           "[tenants-out abc]", // []string is a leaf for flatten
	}
	assertEqual(t, want, got)
}

func selectorOrFail(t *testing.T, ls *labelSelector) *selector {
	t.Helper()
	s, err := parseLabelSelector(ls)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// upstream: TestMatchValuesGoTemplate and TestTransFormGoTemplate.
func TestSelector(t *testing.T) {
	p := map[string]any{"cluster": "cluster", "url": "url", "values": map[string]any{"foo": "bar"}}
	if !selectorOrFail(t, &labelSelector{}).matches(flattenParameters(p)) {
		t.Error("empty selector must match everything")
	}
	if selectorOrFail(t, &labelSelector{MatchLabels: map[string]string{"values.foo": "foo"}}).matches(flattenParameters(p)) {
		t.Error("values.foo=foo must not match bar")
	}
	if !selectorOrFail(t, &labelSelector{MatchLabels: map[string]string{"values.foo": "bar"}}).matches(flattenParameters(p)) {
		t.Error("values.foo=bar must match")
	}
	arr := map[string]any{"values": []any{"bar"}}
	if !selectorOrFail(t, &labelSelector{MatchLabels: map[string]string{"values.0": "bar"}}).matches(flattenParameters(arr)) {
		t.Error("values.0=bar must match")
	}
	// NotIn passes vacuously when the key is absent (upstream comment in
	// TestTransFormGoTemplate "label NotIn matchExpression").
	notIn := selectorOrFail(t, &labelSelector{MatchExpressions: []labelSelectorRequirement{{Key: "metadata.labels.environment", Operator: "NotIn", Values: []string{"staging"}}}})
	if !notIn.matches(map[string]string{}) || notIn.matches(map[string]string{"metadata.labels.environment": "staging"}) {
		t.Error("NotIn semantics")
	}
	// A key with a DNS prefix and '/' is valid ("slash key in label").
	selectorOrFail(t, &labelSelector{MatchLabels: map[string]string{"metadata.labels.argocd.argoproj.io/secret-type": "cluster"}})
	ex := selectorOrFail(t, &labelSelector{MatchExpressions: []labelSelectorRequirement{
		{Key: "shard", Operator: "In", Values: []string{"a", "b"}},
		{Key: "path.basename", Operator: "Exists"},
		{Key: "gone", Operator: "DoesNotExist"},
	}})
	if !ex.matches(map[string]string{"shard": "b", "path.basename": "x"}) || ex.matches(map[string]string{"shard": "b", "path.basename": "x", "gone": ""}) {
		t.Error("In/Exists/DoesNotExist semantics")
	}
}

func TestSelectorErrors(t *testing.T) {
	_, err := parseLabelSelector(&labelSelector{MatchExpressions: []labelSelectorRequirement{{Key: "a", Operator: "Foo"}}})
	if err == nil || err.Error() != `"Foo" is not a valid pod selector operator` {
		t.Errorf("operator: %v", err)
	}
	_, err = parseLabelSelector(&labelSelector{MatchLabels: map[string]string{"-bad": "x"}})
	if err == nil || !strings.HasPrefix(err.Error(), `key: Invalid value: "-bad": name part must consist of`) {
		t.Errorf("key: %v", err)
	}
	_, err = parseLabelSelector(&labelSelector{MatchExpressions: []labelSelectorRequirement{{Key: "a", Operator: "In"}}})
	if err == nil || !strings.Contains(err.Error(), "values set can't be empty") {
		t.Errorf("empty In: %v", err)
	}
}
