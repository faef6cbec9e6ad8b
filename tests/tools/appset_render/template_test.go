// template_test.go: string rendering. Rows marked "upstream:" are copied from
// argo-cd v3.5.1 applicationset/utils/utils_test.go
// TestRenderTemplateParamsGoTemplate.

package main

import "testing"

func TestReplaceUpstreamCases(t *testing.T) {
	cases := []struct {
		name    string
		tmpl    string
		params  map[string]any
		opts    []string
		want    string
		wantErr string
	}{
		{name: "simple substitution", tmpl: "{{ .one }}", params: map[string]any{"one": "two"}, want: "two"},
		{name: "template contains itself", tmpl: "{{ .one }}", params: map[string]any{"one": "{{one}}"}, want: "{{one}}"},
		{name: "depth", tmpl: "{{ .image.name }}:{{ .image.version }}",
			params: map[string]any{"replicas": 3, "image": map[string]any{"name": "busybox", "version": "latest"}}, want: "busybox:latest"},
		{name: "if ok", tmpl: "{{ if .hpa.enabled }}{{ .hpa.maxReplicas }}{{ else }}{{ .replicas }}{{ end }}",
			params: map[string]any{"replicas": 3, "hpa": map[string]any{"enabled": true, "minReplicas": 1, "maxReplicas": 5}}, want: "5"},
		{name: "Index", tmpl: `{{ index .admin "admin-ca" }}, {{ index .admin "admin-jks" }}`,
			params: map[string]any{"admin": map[string]any{"admin-ca": "value admin ca", "admin-jks": "value admin jks"}}, want: "value admin ca, value admin jks"},
		{name: "Test Parse Error", tmpl: `{{functiondoesnotexist}}`, params: map[string]any{"data": "a data string"},
			wantErr: `failed to parse template {{functiondoesnotexist}}: template: base:1: function "functiondoesnotexist" not defined`},
		{name: "Test template error", tmpl: `{{.data.test}}`, params: map[string]any{"data": "a data string"},
			wantErr: `failed to execute go template {{.data.test}}: template: base:1:7: executing "base" at <.data.test>: can't evaluate field test in type interface {}`},
		{name: "lookup missing value with missingkey=default", tmpl: `--> {{.doesnotexist}} <--`, params: map[string]any{"unused": "x"}, want: `--> <no value> <--`},
		{name: "lookup missing value with missingkey=error", tmpl: `--> {{.doesnotexist}} <--`, params: map[string]any{"unused": "x"}, opts: []string{"missingkey=error"},
			wantErr: `failed to execute go template --> {{.doesnotexist}} <--: template: base:1:6: executing "base" at <.doesnotexist>: map has no entry for key "doesnotexist"`},
		{name: "toYaml", tmpl: `{{ toYaml . | indent 2 }}`,
			params: map[string]any{"foo": map[string]any{"bar": map[string]any{"bool": true, "number": 2, "str": "Hello world"}}},
			want:   "  foo:\n    bar:\n      bool: true\n      number: 2\n      str: Hello world"},
		{name: "fromYaml", tmpl: `{{ get (fromYaml .value) "hello" }}`, params: map[string]any{"value": "hello: world"}, want: "world"},
		{name: "fromYaml error", tmpl: `{{ get (fromYaml .value) "hello" }}`, params: map[string]any{"value": "non\n compliant\n yaml"},
			wantErr: "failed to execute go template {{ get (fromYaml .value) \"hello\" }}: template: base:1:8: executing \"base\" at <fromYaml .value>: error calling fromYaml: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go value of type map[string]interface {}"},
		{name: "fromYamlArray", tmpl: `{{ fromYamlArray .value | last }}`, params: map[string]any{"value": "- hello world\n- bonjour tout le monde"}, want: "bonjour tout le monde"},
		// Argo CD removes env, expandenv and getHostByName and adds normalize.
		{name: "env removed", tmpl: `{{ env "HOME" }}`, params: map[string]any{"x": 1},
			wantErr: `failed to parse template {{ env "HOME" }}: template: base:1: function "env" not defined`},
		{name: "normalize", tmpl: `{{ normalize .n }}`, params: map[string]any{"n": "Prod_01/West."}, want: "prod-01-west"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replace(tc.tmpl, tc.params, tc.opts)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("want error %q, got %q, %v", tc.wantErr, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("want %q, got %q, %v", tc.want, got, err)
			}
		})
	}
}

func TestGoTemplateOptionsValidated(t *testing.T) {
	if err := validateGoTemplateOptions([]string{"missingkey=error", "missingkey=zero"}); err != nil {
		t.Fatal(err)
	}
	if err := validateGoTemplateOptions([]string{"missingkey=bogus"}); err == nil {
		t.Fatal("an option text/template rejects must be an error")
	}
}
