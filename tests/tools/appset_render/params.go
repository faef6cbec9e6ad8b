// params.go owns the parameter sets the git files generator builds from each
// matched file in goTemplate mode, and the generator-level post-selector.
//
// Upstream read: argoproj/argo-cd v3.5.1 (commit
// 109ca7ca71139e514114499d294a492e7910a965):
//   - applicationset/generators/git.go: generateParamsForGitFiles (include and
//     exclude patterns, sorted file order, error wrapping) and
//     generateParamsFromGitFile (single object, else array; maps.Copy of the
//     file's keys, THEN params["path"] = map of path facts, or
//     params[pathParamPrefix] = {"path": facts}; then values);
//   - applicationset/generators/value_interpolation.go: appendTemplatedValues
//     (each value rendered against the params built so far, stored as
//     params["values"] = map[string]string);
//   - applicationset/generators/generator_spec_processor.go: Transform
//     (selector applied to flattenParameters(param), i.e. jeremywohl/flatten
//     DotStyle over normalizeMapForFlatten, values fmt.Sprintf("%v"));
//   - applicationset/utils/selector.go: LabelSelectorAsSelector,
//     newRequirement, Requirement.Matches;
//   - github.com/jeremywohl/flatten at 07e4a09fb8e4 (argo-cd's pin),
//     flatten.go: only map[string]interface{} and []interface{} are recursed
//     into; array indexes become ".0", ".1"; anything else is a leaf.

package main

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// generateParamsFromGitFile mirrors GitGenerator.generateParamsFromGitFile
// with useGoTemplate == true.
func generateParamsFromGitFile(filePath string, fileContent []byte, values map[string]string, goTemplateOptions []string, pathParamPrefix string) ([]map[string]any, error) {
	objectsFound := []map[string]any{}

	// First as a single object (this also succeeds for an empty file) ...
	singleObj := map[string]any{}
	if err := sigsUnmarshal(fileContent, &singleObj); err == nil {
		objectsFound = append(objectsFound, singleObj)
	} else {
		// ... then as an array of objects.
		if err := sigsUnmarshal(fileContent, &objectsFound); err != nil {
			return nil, fmt.Errorf("unable to parse file: %w", err)
		}
	}

	res := []map[string]any{}
	for _, objectFound := range objectsFound {
		params := map[string]any{}
		for k, v := range objectFound { // maps.Copy(params, objectFound)
			params[k] = v
		}

		dir := path.Dir(filePath)
		paramPath := map[string]any{
			"path":               dir,
			"basename":           path.Base(dir),
			"filename":           path.Base(filePath),
			"basenameNormalized": sanitizeName(path.Base(dir)),
			"filenameNormalized": sanitizeName(path.Base(path.Base(filePath))),
			"segments":           strings.Split(dir, "/"),
		}
		// The file's own "path" (or pathParamPrefix) key is overwritten here:
		// in goTemplate mode `{{ .path }}` is this map, never the file's value.
		if pathParamPrefix != "" {
			params[pathParamPrefix] = map[string]any{"path": paramPath}
		} else {
			params["path"] = paramPath
		}

		if err := appendTemplatedValues(values, params, goTemplateOptions); err != nil {
			return nil, fmt.Errorf("failed to append templated values: %w", err)
		}
		res = append(res, params)
	}
	return res, nil
}

// appendTemplatedValues mirrors value_interpolation.go appendTemplatedValues
// (goTemplate branch). Values see the params built so far (file keys and
// path facts), not each other. Upstream iterates a Go map, so which failing
// value is reported first is unspecified; here keys are sorted.
func appendTemplatedValues(values map[string]string, params map[string]any, goTemplateOptions []string) error {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rendered map[string]string
	for _, key := range keys {
		result, err := replace(values[key], params, goTemplateOptions)
		if err != nil {
			return fmt.Errorf("failed to replace templated string: %w",
				fmt.Errorf("failed to replace templated string with rendered values: %w", err))
		}
		if rendered == nil {
			rendered = map[string]string{}
		}
		rendered[key] = result
	}
	if rendered != nil { // maps.Copy(params, tmp): only when values is non-empty
		params["values"] = rendered
	}
	return nil
}

// flattenParameters mirrors generator_spec_processor.go flattenParameters.
func flattenParameters(in map[string]any) map[string]string {
	flat := map[string]any{}
	flattenInto(true, flat, normalizeMapForFlatten(in), "")
	out := make(map[string]string, len(flat))
	for k, v := range flat {
		out[k] = fmt.Sprintf("%v", v)
	}
	return out
}

func normalizeMapForFlatten(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		switch cast := v.(type) {
		case map[string]string:
			inner := make(map[string]any, len(cast))
			for ik, iv := range cast {
				inner[ik] = iv
			}
			out[k] = inner
		case map[string]any:
			out[k] = normalizeMapForFlatten(cast)
		default:
			out[k] = v
		}
	}
	return out
}

// flattenInto mirrors jeremywohl/flatten's flatten() with DotStyle.
func flattenInto(top bool, flatMap map[string]any, nested any, prefix string) {
	enkey := func(sub string) string {
		if top {
			return prefix + sub
		}
		return prefix + "." + sub
	}
	assign := func(newKey string, v any) {
		switch v.(type) {
		case map[string]any, []any:
			flattenInto(false, flatMap, v, newKey)
		default:
			flatMap[newKey] = v
		}
	}
	switch n := nested.(type) {
	case map[string]any:
		for k, v := range n {
			assign(enkey(k), v)
		}
	case []any:
		for i, v := range n {
			assign(enkey(strconv.Itoa(i)), v)
		}
	}
}

// labelSelector is metav1.LabelSelector as it appears in the ApplicationSet.
type labelSelector struct {
	MatchLabels      map[string]string
	MatchExpressions []labelSelectorRequirement
}

type labelSelectorRequirement struct {
	Key      string
	Operator string
	Values   []string
}

type requirement struct {
	key      string
	operator string // In, NotIn, Exists, DoesNotExist (matchLabels -> "=")
	values   []string
}

// selector is the result of LabelSelectorAsSelector; nothing is only used for
// a nil selector, which Transform never applies anyway.
type selector struct {
	requirements []requirement
}

// parseLabelSelector mirrors utils.LabelSelectorAsSelector for a non-nil
// selector (an empty one matches everything): the first invalid requirement
// fails the whole selector. Upstream walks MatchLabels in Go map order; here
// keys are sorted so the reported error is stable.
func parseLabelSelector(ps *labelSelector) (*selector, error) {
	var reqs []requirement
	keys := make([]string, 0, len(ps.MatchLabels))
	for k := range ps.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r, err := newRequirement(k, "=", []string{ps.MatchLabels[k]})
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, r)
	}
	for _, expr := range ps.MatchExpressions {
		switch expr.Operator {
		case "In", "NotIn", "Exists", "DoesNotExist":
		default:
			return nil, fmt.Errorf("%q is not a valid pod selector operator", expr.Operator)
		}
		r, err := newRequirement(expr.Key, expr.Operator, append([]string(nil), expr.Values...))
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, r)
	}
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].key < reqs[j].key })
	return &selector{requirements: reqs}, nil
}

// newRequirement mirrors selector.go newRequirement's checks; the error is
// formatted like field.ErrorList.ToAggregate() (one error alone, several in
// brackets).
func newRequirement(key, op string, vals []string) (requirement, error) {
	var errs []string
	if msg := validateQualifiedName(key); msg != "" {
		errs = append(errs, fmt.Sprintf("key: Invalid value: %q: %s", key, msg))
	}
	switch op {
	case "In", "NotIn":
		if len(vals) == 0 {
			errs = append(errs, fmt.Sprintf("values: Invalid value: %q: for 'in', 'notin' operators, values set can't be empty", vals))
		}
	case "=":
		if len(vals) != 1 {
			errs = append(errs, fmt.Sprintf("values: Invalid value: %q: exact-match compatibility requires one single value", vals))
		}
	case "Exists", "DoesNotExist":
		if len(vals) != 0 {
			errs = append(errs, fmt.Sprintf("values: Invalid value: %q: values set must be empty for exists and does not exist", vals))
		}
	}
	switch len(errs) {
	case 0:
		return requirement{key: key, operator: op, values: vals}, nil
	case 1:
		return requirement{}, fmt.Errorf("%s", errs[0])
	default:
		return requirement{}, fmt.Errorf("[%s]", strings.Join(errs, ", "))
	}
}

func (s *selector) matches(labels map[string]string) bool {
	for _, r := range s.requirements {
		v, has := labels[r.key]
		switch r.operator {
		case "=", "In":
			if !has || !contains(r.values, v) {
				return false
			}
		case "NotIn":
			if has && contains(r.values, v) {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validateQualifiedName mirrors k8s.io/apimachinery validation.IsQualifiedName
// (an optional DNS-1123 subdomain prefix and "/", then a name of at most 63
// characters). Returns "" when valid; messages are condensed.
var qualifiedNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
var dns1123SubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func validateQualifiedName(value string) string {
	parts := strings.Split(value, "/")
	var name string
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		prefix := parts[0]
		name = parts[1]
		if prefix == "" {
			return "prefix part must be non-empty"
		}
		if len(prefix) > 253 || !dns1123SubdomainRE.MatchString(prefix) {
			return "prefix part must be a lowercase RFC 1123 subdomain"
		}
	default:
		return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character with an optional DNS subdomain prefix and '/'"
	}
	if name == "" {
		return "name part must be non-empty"
	}
	if len(name) > 63 {
		return "name part must be no more than 63 characters"
	}
	if !qualifiedNameRE.MatchString(name) {
		return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
	}
	return ""
}
