// render.go owns turning one ApplicationSet into the Applications the
// controller would generate from it (git files generators, goTemplate mode).
//
// Upstream read: argoproj/argo-cd v3.5.1 (commit
// 109ca7ca71139e514114499d294a492e7910a965):
//   - applicationset/controllers/template/template.go GenerateApplications:
//     per generator, Transform -> for each params RenderTemplateParams, then
//     renderTemplatePatch when spec.templatePatch is set, then
//     app.Namespace = the ApplicationSet's namespace; the first error is
//     returned, and applicationset_controller.go Reconcile then sets the
//     ErrorOccurred condition and applies NOTHING for that ApplicationSet;
//   - applicationset/generators/generator_spec_processor.go Transform and
//     mergeGeneratorTemplate (mergo.Merge(generatorTemplate, spec.template):
//     the generator's own template wins where it sets a field);
//   - applicationset/utils/utils.go RenderTemplateParams / deeplyReplace:
//     every string field and every map key is rendered with Replace, nil map
//     values are dropped, other scalars are copied; when the ApplicationSet has
//     no syncPolicy.preserveResourcesOnDeletion and the template has no
//     finalizers, resources-finalizer.argocd.argoproj.io is added;
//   - applicationset/controllers/template/patch.go applyTemplatePatch
//     (strategic merge patch on the Application; spec.project restored);
//   - applicationset/controllers/applicationset_controller.go
//     validateGeneratedApplications (duplicate names in one ApplicationSet).
//
// The upstream walk is over the typed Application struct; this one is over
// the template's JSON tree (same strings, same map keys; unknown fields are
// kept here where the typed struct would drop them).

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

const resourcesFinalizerName = "resources-finalizer.argocd.argoproj.io"

type appSet struct {
	File                        string
	Name                        string
	Namespace                   string
	GoTemplate                  bool
	GoTemplateOptions           []string
	Generators                  []map[string]any
	Template                    map[string]any
	TemplatePatch               *string
	PreserveResourcesOnDeletion bool
}

type generatedApp struct {
	ApplicationSet     string         `json:"applicationSet"`
	ApplicationSetFile string         `json:"applicationSetFile"`
	Generator          int            `json:"generator"`
	File               string         `json:"file"`
	Application        map[string]any `json:"application"`
	Params             map[string]any `json:"params,omitempty"`
}

func parseAppSet(file string, obj map[string]any) (*appSet, error) {
	meta, _ := obj["metadata"].(map[string]any)
	spec, _ := obj["spec"].(map[string]any)
	if meta == nil || spec == nil {
		return nil, fmt.Errorf("%s: ApplicationSet without metadata or spec", file)
	}
	as := &appSet{File: file}
	as.Name, _ = meta["name"].(string)
	as.Namespace, _ = meta["namespace"].(string)
	as.GoTemplate, _ = spec["goTemplate"].(bool)
	for _, o := range asSlice(spec["goTemplateOptions"]) {
		s, ok := o.(string)
		if !ok {
			return nil, fmt.Errorf("%s: goTemplateOptions must be strings", file)
		}
		as.GoTemplateOptions = append(as.GoTemplateOptions, s)
	}
	for i, g := range asSlice(spec["generators"]) {
		gm, ok := g.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: generators[%d] is not a mapping", file, i)
		}
		as.Generators = append(as.Generators, gm)
	}
	as.Template, _ = spec["template"].(map[string]any)
	if as.Template == nil {
		as.Template = map[string]any{}
	}
	if tp, ok := spec["templatePatch"].(string); ok {
		as.TemplatePatch = &tp
	}
	if sp, ok := spec["syncPolicy"].(map[string]any); ok {
		as.PreserveResourcesOnDeletion, _ = sp["preserveResourcesOnDeletion"].(bool)
	}
	return as, nil
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// generateApplications mirrors GenerateApplications + the duplicate-name part
// of validateGeneratedApplications. It returns every error it meets (the
// controller reports only the first one in the ApplicationSet's
// ErrorOccurred condition, then applies nothing).
func generateApplications(as *appSet, lister fileLister, withParams bool) ([]generatedApp, []error) {
	var apps []generatedApp
	var errs []error
	if !as.GoTemplate {
		return nil, []error{errors.New("only goTemplate: true is emulated by appset_render")}
	}
	if err := validateGoTemplateOptions(as.GoTemplateOptions); err != nil {
		return nil, []error{err}
	}
	for gi, gen := range as.Generators {
		genApps, err := transformGitFiles(as, gi, gen, lister, withParams)
		errs = append(errs, err...)
		apps = append(apps, genApps...)
	}
	seen := map[string]bool{}
	var kept []generatedApp
	for _, a := range apps {
		name := appName(a.Application)
		if seen[name] {
			errs = append(errs, fmt.Errorf("ApplicationSet %s contains applications with duplicate name: %s", as.Name, name))
			continue
		}
		seen[name] = true
		kept = append(kept, a)
	}
	return kept, errs
}

func appName(app map[string]any) string {
	meta, _ := app["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return name
}

func transformGitFiles(as *appSet, gi int, gen map[string]any, lister fileLister, withParams bool) ([]generatedApp, []error) {
	// Transform: the selector is parsed before anything else.
	var sel *selector
	if rawSel, ok := gen["selector"]; ok && rawSel != nil {
		ls, err := toLabelSelector(rawSel)
		if err != nil {
			return nil, []error{fmt.Errorf("error parsing label selector: %w", err)}
		}
		sel, err = parseLabelSelector(ls)
		if err != nil {
			return nil, []error{fmt.Errorf("error parsing label selector: %w", err)}
		}
	}
	var kinds []string
	for k := range gen {
		if k != "selector" {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	if len(kinds) != 1 || kinds[0] != "git" {
		return nil, []error{fmt.Errorf("generators[%d]: only a single git files generator is emulated, found %v", gi, kinds)}
	}
	git, _ := gen["git"].(map[string]any)
	if git == nil {
		return nil, []error{fmt.Errorf("generators[%d].git is not a mapping", gi)}
	}
	if len(asSlice(git["directories"])) != 0 {
		return nil, []error{fmt.Errorf("generators[%d]: git directories generator is not emulated", gi)}
	}
	repoURL, _ := git["repoURL"].(string)
	pathParamPrefix, _ := git["pathParamPrefix"].(string)
	var values map[string]string
	if rv, ok := git["values"].(map[string]any); ok {
		values = map[string]string{}
		for k, v := range rv {
			s, ok := v.(string)
			if !ok {
				return nil, []error{fmt.Errorf("generators[%d].git.values.%s must be a string", gi, k)}
			}
			values[k] = s
		}
	}
	var items []gitFileItem
	for i, f := range asSlice(git["files"]) {
		fm, ok := f.(map[string]any)
		if !ok {
			return nil, []error{fmt.Errorf("generators[%d].git.files[%d] is not a mapping", gi, i)}
		}
		p, _ := fm["path"].(string)
		ex, _ := fm["exclude"].(bool)
		items = append(items, gitFileItem{Path: p, Exclude: ex})
	}
	if len(items) == 0 {
		return nil, []error{errors.New("ApplicationSet is empty")} // ErrEmptyAppSetGenerator
	}

	genTemplate, _ := git["template"].(map[string]any)
	var genCopy map[string]any
	if genTemplate != nil {
		genCopy = deepCopy(genTemplate).(map[string]any)
	}
	merged := mergoMerge(genCopy, as.Template)

	paths, contents, err := selectGitFiles(lister, items)
	if err != nil {
		return nil, []error{fmt.Errorf("error generating params from git: %w", err)}
	}
	type fileParams struct {
		file   string
		params map[string]any
	}
	var all []fileParams
	for _, p := range paths {
		ps, err := generateParamsFromGitFile(p, contents[p], values, as.GoTemplateOptions, pathParamPrefix)
		if err != nil {
			// GenerateParams fails as a whole: no Application from this generator.
			return nil, []error{fmt.Errorf("error generating params from git: %w",
				fmt.Errorf("unable to process file '%s' from repository '%s': %w", p, repoURL, err))}
		}
		for _, prm := range ps {
			all = append(all, fileParams{p, prm})
		}
	}

	var apps []generatedApp
	var errs []error
	for _, fp := range all {
		if sel != nil && !sel.matches(flattenParameters(fp.params)) {
			continue
		}
		app, err := renderTemplateParams(merged, as.PreserveResourcesOnDeletion, fp.params, as.GoTemplateOptions)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fp.file, err))
			continue
		}
		if as.TemplatePatch != nil {
			app, err = renderTemplatePatch(app, *as.TemplatePatch, fp.params, as.GoTemplateOptions)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", fp.file, err))
				continue
			}
		}
		meta := app["metadata"].(map[string]any)
		if as.Namespace != "" {
			meta["namespace"] = as.Namespace
		} else {
			delete(meta, "namespace")
		}
		ga := generatedApp{
			ApplicationSet:     as.Name,
			ApplicationSetFile: as.File,
			Generator:          gi,
			File:               fp.file,
			Application:        app,
		}
		if withParams {
			ga.Params = fp.params
		}
		apps = append(apps, ga)
	}
	return apps, errs
}

func toLabelSelector(raw any) (*labelSelector, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("selector is not a mapping")
	}
	ls := &labelSelector{}
	if ml, ok := m["matchLabels"].(map[string]any); ok {
		ls.MatchLabels = map[string]string{}
		for k, v := range ml {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("matchLabels.%s must be a string", k)
			}
			ls.MatchLabels[k] = s
		}
	}
	for _, e := range asSlice(m["matchExpressions"]) {
		em, ok := e.(map[string]any)
		if !ok {
			return nil, errors.New("matchExpressions entry is not a mapping")
		}
		r := labelSelectorRequirement{}
		r.Key, _ = em["key"].(string)
		r.Operator, _ = em["operator"].(string)
		for _, v := range asSlice(em["values"]) {
			s, ok := v.(string)
			if !ok {
				return nil, errors.New("matchExpressions values must be strings")
			}
			r.Values = append(r.Values, s)
		}
		ls.MatchExpressions = append(ls.MatchExpressions, r)
	}
	return ls, nil
}

// renderTemplateParams mirrors Render.RenderTemplateParams over
// GetTempApplication(template): metadata {name, namespace, labels,
// annotations, finalizers} and spec.
func renderTemplateParams(tmpl map[string]any, preserveResourcesOnDeletion bool, params map[string]any, opts []string) (map[string]any, error) {
	meta, _ := tmpl["metadata"].(map[string]any)
	spec, _ := tmpl["spec"].(map[string]any)
	app := map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata":   map[string]any{},
		"spec":       map[string]any{},
	}
	if len(params) == 0 {
		// upstream returns the template unrendered
		if meta != nil {
			app["metadata"] = deepCopy(meta)
		}
		if spec != nil {
			app["spec"] = deepCopy(spec)
		}
		return app, nil
	}
	outMeta := map[string]any{}
	// ObjectMeta field order, so the first error reported matches upstream's.
	for _, k := range []string{"name", "namespace", "labels", "annotations", "finalizers"} {
		v, ok := meta[k]
		if !ok || v == nil {
			continue
		}
		r, err := deepReplace(v, "", params, opts)
		if err != nil {
			return nil, err
		}
		outMeta[k] = r
	}
	outSpec, err := deepReplace(spec, "spec", params, opts)
	if err != nil {
		return nil, err
	}
	if outSpec == nil {
		outSpec = map[string]any{}
	}
	if !preserveResourcesOnDeletion && len(asSlice(outMeta["finalizers"])) == 0 {
		outMeta["finalizers"] = []any{resourcesFinalizerName}
	}
	app["metadata"] = outMeta
	app["spec"] = outSpec
	return app, nil
}

// structFieldOrder lists, for the typed structs whose fields the upstream
// walk visits in declaration order, that order (argo-cd v3.5.1
// pkg/apis/application/v1alpha1/types.go), so the first error reported is the
// one upstream reports. Other maps are walked in sorted key order (upstream
// walks real maps in Go's random order).
var structFieldOrder = map[string][]string{
	"spec":             {"source", "destination", "project", "syncPolicy", "ignoreDifferences", "info", "revisionHistoryLimit", "sources", "sourceHydrator"},
	"spec.source":      {"repoURL", "path", "targetRevision", "helm", "kustomize", "directory", "plugin", "chart", "ref", "name", "tagPrefix"},
	"spec.sources[]":   {"repoURL", "path", "targetRevision", "helm", "kustomize", "directory", "plugin", "chart", "ref", "name", "tagPrefix"},
	"spec.destination": {"server", "namespace", "name"},
	"spec.syncPolicy":  {"automated", "syncOptions", "retry", "managedNamespaceMetadata"},
}

func orderedKeys(m map[string]any, ctx string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	order, ok := structFieldOrder[ctx]
	if !ok {
		return keys
	}
	rank := map[string]int{}
	for i, k := range order {
		rank[k] = i
	}
	sort.SliceStable(keys, func(i, j int) bool {
		ri, iok := rank[keys[i]]
		rj, jok := rank[keys[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return false
	})
	return keys
}

// deepReplace mirrors deeplyReplace over a JSON tree; ctx is the dotted path
// of v (for field order only).
func deepReplace(v any, ctx string, params map[string]any, opts []string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for _, k := range orderedKeys(t, ctx) {
			val := t[k]
			if val == nil {
				continue // nil map values are dropped
			}
			rv, err := deepReplace(val, ctx+"."+k, params, opts)
			if err != nil {
				return nil, err
			}
			rk, err := replace(k, params, opts)
			if err != nil {
				return nil, err
			}
			out[rk] = rv
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			if e == nil {
				continue
			}
			r, err := deepReplace(e, ctx+"[]", params, opts)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case string:
		return replace(t, params, opts)
	default:
		return t, nil
	}
}

// renderTemplatePatch mirrors template.go renderTemplatePatch + patch.go
// applyTemplatePatch. The Application type has no list merge keys outside
// ObjectMeta, so the strategic merge is a JSON merge patch plus a set union
// for metadata.finalizers (patchStrategy "merge"); $patch directives are not
// emulated.
func renderTemplatePatch(app map[string]any, templatePatch string, params map[string]any, opts []string) (map[string]any, error) {
	replaced, err := replace(templatePatch, params, opts)
	if err != nil {
		return nil, fmt.Errorf("error replacing values in templatePatch: %w", err)
	}
	converted, err := convertYAMLToJSON(replaced)
	if err != nil {
		return nil, fmt.Errorf("error while converting template to json %q: %w", converted, err)
	}
	var patch map[string]any
	if err := json.Unmarshal([]byte(converted), &patch); err != nil {
		return nil, fmt.Errorf("invalid templatePatch %q: %w", converted, err)
	}
	project := nestedString(app, "spec", "project")
	var origFinalizers []any
	if meta, ok := app["metadata"].(map[string]any); ok {
		origFinalizers = asSlice(meta["finalizers"])
	}
	out := mergePatch(deepCopy(app).(map[string]any), patch)
	if pm, ok := patch["metadata"].(map[string]any); ok {
		if pf, ok := pm["finalizers"].([]any); ok {
			union := append([]any(nil), origFinalizers...)
			for _, f := range pf {
				if !containsAny(union, f) {
					union = append(union, f)
				}
			}
			out["metadata"].(map[string]any)["finalizers"] = union
		}
	}
	if spec, ok := out["spec"].(map[string]any); ok {
		spec["project"] = project // "Prevent changes to the `project` field"
	}
	return out, nil
}

func containsAny(list []any, v any) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func mergePatch(dst map[string]any, patch map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, pv := range patch {
		if pv == nil {
			delete(dst, k)
			continue
		}
		if pm, ok := pv.(map[string]any); ok {
			dm, _ := dst[k].(map[string]any)
			dst[k] = mergePatch(dm, pm)
			continue
		}
		dst[k] = pv
	}
	return dst
}

// mergoMerge mirrors mergo.Merge(dst, src) without WithOverride: a field of
// dst keeps its value unless it is empty, nested mappings merge.
func mergoMerge(dst, src map[string]any) map[string]any {
	if dst == nil {
		return deepCopy(src).(map[string]any)
	}
	for k, sv := range src {
		dv, ok := dst[k]
		if !ok || isEmptyValue(dv) {
			dst[k] = deepCopy(sv)
			continue
		}
		dm, dIsMap := dv.(map[string]any)
		sm, sIsMap := sv.(map[string]any)
		if dIsMap && sIsMap {
			dst[k] = mergoMerge(dm, sm)
		}
	}
	return dst
}

func isEmptyValue(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case float64:
		return t == 0
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return t
	}
}

func nestedString(m map[string]any, keys ...string) string {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[k]
	}
	s, _ := cur.(string)
	return s
}
