// template.go owns goTemplate string rendering exactly as the ApplicationSet
// controller does it.
//
// Upstream read: argoproj/argo-cd v3.5.1 (commit
// 109ca7ca71139e514114499d294a492e7910a965):
//   - applicationset/utils/utils.go: init() builds sprigFuncMap from
//     sprig.GenericFuncMap(), deletes "env", "expandenv" and "getHostByName",
//     adds "normalize" (SanitizeName), "slugify" (SlugifyName), "toYaml",
//     "fromYaml", "fromYamlArray", and parses every string against a clone of
//     template.New("base").Funcs(sprigFuncMap);
//   - Render.Replace (goTemplate branch): Clone, Option(o) for every
//     goTemplateOptions entry, Parse, Execute(params); error texts
//     "failed to parse template %s: %w" and "failed to execute go template %s: %w";
//   - applicationset/utils/template_functions.go: SanitizeName, toYAML,
//     fromYAML, fromYAMLArray.
//
// Differences: sprig is Debian's 3.2.3, upstream pins 3.3.0 (3.3.0 adds
// sha512sum, added below, and maps camelcase to xstrings.ToPascalCase); Go is
// Debian's 1.19, upstream builds with 1.26. slugify depends on
// github.com/gosimple/slug, which Debian does not package: it is registered so
// templates parse, but calling it is an error rather than a guess.

package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

var baseTemplate *template.Template

func init() {
	funcs := sprig.GenericFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	delete(funcs, "getHostByName")
	if _, ok := funcs["sha512sum"]; !ok { // sprig 3.3.0 (upstream's pin) has it
		funcs["sha512sum"] = func(input string) string {
			hash := sha512.Sum512([]byte(input))
			return hex.EncodeToString(hash[:])
		}
	}
	funcs["normalize"] = sanitizeName
	funcs["slugify"] = func(args ...any) (string, error) {
		return "", errors.New("slugify (github.com/gosimple/slug) is not emulated by appset_render")
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	baseTemplate = template.New("base").Funcs(funcs)
}

var invalidDNSNameChars = regexp.MustCompile("[^-a-z0-9.]")

// sanitizeName mirrors applicationset/utils/template_functions.go SanitizeName.
func sanitizeName(name string) string {
	const maxDNSNameLength = 253
	name = strings.ToLower(name)
	name = invalidDNSNameChars.ReplaceAllString(name, "-")
	if len(name) > maxDNSNameLength {
		name = name[:maxDNSNameLength]
	}
	return strings.Trim(name, "-.")
}

// toYAML mirrors template_functions.go toYAML (sigs.k8s.io/yaml.Marshal =
// json.Marshal then JSONToYAML, trailing newline trimmed).
func toYAML(v any) (string, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("error marshaling into JSON: %w", err)
	}
	data, err := jsonToYAML(j)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(data), "\n"), nil
}

func fromYAML(str string) (map[string]any, error) {
	m := map[string]any{}
	if err := sigsUnmarshal([]byte(str), &m); err != nil {
		return nil, err
	}
	return m, nil
}

func fromYAMLArray(str string) ([]any, error) {
	a := []any{}
	if err := sigsUnmarshal([]byte(str), &a); err != nil {
		return nil, err
	}
	return a, nil
}

// validateGoTemplateOptions rejects options text/template would panic on
// (upstream calls template.Option directly, which panics on an unknown option).
func validateGoTemplateOptions(opts []string) error {
	for _, o := range opts {
		switch o {
		case "missingkey=default", "missingkey=invalid", "missingkey=zero", "missingkey=error":
		default:
			return fmt.Errorf("goTemplateOptions: unrecognized option %q (text/template.Option would panic)", o)
		}
	}
	return nil
}

// replace mirrors Render.Replace with useGoTemplate == true.
func replace(tmpl string, params map[string]any, goTemplateOptions []string) (string, error) {
	cloned, err := baseTemplate.Clone()
	if err != nil {
		return "", fmt.Errorf("failed to clone base template: %w", err)
	}
	for _, option := range goTemplateOptions {
		cloned = cloned.Option(option)
	}
	parsed, err := cloned.Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("failed to parse template %s: %w", tmpl, err)
	}
	var buf bytes.Buffer
	if err := parsed.Execute(&buf, params); err != nil {
		return "", fmt.Errorf("failed to execute go template %s: %w", tmpl, err)
	}
	return buf.String(), nil
}
