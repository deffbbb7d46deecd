// render: Helm's template engine without Helm, for the chart tests (tests/chart/test_chart.py).
//
// Helm renders a chart with Go's text/template, the sprig function library and a few functions
// and objects of its own. This program does the same for one chart and its charts/ subcharts, following
// Helm 3's engine (pkg/engine) and value handling (pkg/chartutil) where the chart depends on them:
//   - .Values: the chart's values.yaml coalesced with the -f files (later files win, maps merge
//     key by key, lists are replaced, a null deletes the key), numbers decoded as float64 the way
//     Helm's YAML-through-JSON decoding does (so a template that prints a number without `int`
//     shows the same 1e+06 that Helm would);
//   - .Release, .Chart (from Chart.yaml), .Capabilities (KubeVersion, APIVersions.Has),
//     .Files.Get, .Template;
//   - sprig's functions without env/expandenv, and Helm's include, tpl, required, fail,
//     toYaml, fromYaml, fromYamlArray, toJson, fromJson, fromJsonArray and lookup (which answers
//     from the objects in a -lookup file, or with an empty map, as in `helm template`);
//   - missingkey=zero and "<no value>" removed from the output, or missingkey=error with
//     -strict (what `helm lint --strict` uses).
//
// Subcharts (charts/NAME, a folder or a symlink to one), as Helm loads them: their templates
// join the one set (named templates are shared), their values.yaml defaults are coalesced under
// .Values.NAME of the parent, and their templates render with .Values = that subtree and .Chart
// = their Chart.yaml; only the parent's NOTES.txt is rendered.
//
// Output: every template except partials (_*.tpl) and NOTES.txt as a multi-document YAML stream
// with "# Source:" comments, like `helm template`; with -notes, only NOTES.txt. With
// -values-out FILE the coalesced values are also written there as JSON: Helm validates those,
// not the files, against values.schema.json.
//
// Build (no modules, Debian's packages): GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

// Metadata is Chart.yaml (Helm's chart.Metadata); .Chart exposes its fields by their Go names.
type Metadata struct {
	APIVersion   string            `yaml:"apiVersion"`
	Name         string            `yaml:"name"`
	Version      string            `yaml:"version"`
	KubeVersion  string            `yaml:"kubeVersion"`
	Description  string            `yaml:"description"`
	Type         string            `yaml:"type"`
	Keywords     []string          `yaml:"keywords"`
	Home         string            `yaml:"home"`
	Sources      []string          `yaml:"sources"`
	Icon         string            `yaml:"icon"`
	AppVersion   string            `yaml:"appVersion"`
	Deprecated   bool              `yaml:"deprecated"`
	Annotations  map[string]string `yaml:"annotations"`
	Maintainers  []Maintainer      `yaml:"maintainers"`
	Dependencies []interface{}     `yaml:"dependencies"`
}

type Maintainer struct {
	Name  string `yaml:"name"`
	Email string `yaml:"email"`
	URL   string `yaml:"url"`
}

// ChartObject is what Helm passes as .Chart: the metadata plus IsRoot.
type ChartObject struct {
	Metadata
	IsRoot bool
}

type Release struct {
	Name      string
	Namespace string
	Service   string
	Revision  int
	IsInstall bool
	IsUpgrade bool
}

type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k KubeVersion) String() string     { return k.Version }
func (k KubeVersion) GitVersion() string { return k.Version }

// VersionSet is Helm's chartutil.VersionSet: "group/version" and "group/version/Kind" strings.
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type HelmVersion struct {
	Version string
}

type Capabilities struct {
	APIVersions VersionSet
	KubeVersion KubeVersion
	HelmVersion HelmVersion
}

// Files is .Files: the chart's files outside templates/.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }
func (f Files) GetBytes(name string) []byte {
	return f[name]
}

// The API groups every cluster serves (Helm's default set is every group its client knows).
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"scheduling.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1", "node.k8s.io/v1",
	"certificates.k8s.io/v1", "events.k8s.io/v1",
}

// jsonish turns what yaml.v2 decodes into what JSON decoding gives: string keys, float64 numbers.
func jsonish(v interface{}) (interface{}, error) {
	var conv func(interface{}) interface{}
	conv = func(v interface{}) interface{} {
		switch x := v.(type) {
		case map[interface{}]interface{}:
			m := make(map[string]interface{}, len(x))
			for k, e := range x {
				m[fmt.Sprint(k)] = conv(e)
			}
			return m
		case []interface{}:
			for i := range x {
				x[i] = conv(x[i])
			}
			return x
		}
		return v
	}
	j, err := json.Marshal(conv(v))
	if err != nil {
		return nil, err
	}
	var out interface{}
	err = json.Unmarshal(j, &out)
	return out, err
}

// yamlToMap decodes a YAML mapping the way Helm does (sigs.k8s.io/yaml: YAML → JSON → Go).
func yamlToMap(data []byte) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	v, err := jsonish(raw)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("not a YAML mapping")
	}
	return m, nil
}

// toYAML is Helm's toYaml: JSON first (so struct tags and map order are JSON's), then YAML.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m, err := yamlToMap([]byte(s))
	if err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	v, err := jsonish(raw)
	if err != nil {
		return []interface{}{err.Error()}
	}
	a, ok := v.([]interface{})
	if !ok {
		return []interface{}{"not a YAML sequence"}
	}
	return a
}

func toJSON(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(j)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// mergeUser lays b over a for two user values files (nulls are kept: coalescing removes them).
func mergeUser(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeUser(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce lays the user's values over the chart's defaults as Helm does: maps merge key by
// key, anything else is replaced, and a null from the user deletes the key.
func coalesce(defaults, user map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uIsMap := v.(map[string]interface{})
		dm, dIsMap := out[k].(map[string]interface{})
		switch {
		case uIsMap && dIsMap:
			out[k] = coalesce(dm, um)
		case uIsMap:
			out[k] = coalesce(map[string]interface{}{}, um)
		default:
			if dIsMap {
				fmt.Fprintf(os.Stderr, "render: warning: %s: a table in the chart's values is overwritten by a non-table value\n", k)
			}
			out[k] = v
		}
	}
	return out
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var valueFiles, apiVersions stringList
	chartDir := flag.String("chart", "", "chart directory")
	releaseName := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.31.0", "Kubernetes version for .Capabilities")
	lookupFile := flag.String("lookup", "", "YAML stream of objects that lookup finds (default: none, as in helm template)")
	isUpgrade := flag.Bool("upgrade", false, ".Release.IsUpgrade (else IsInstall)")
	strict := flag.Bool("strict", false, "missingkey=error, as helm lint --strict")
	notes := flag.Bool("notes", false, "render NOTES.txt only")
	valuesOut := flag.String("values-out", "", "write the coalesced values here as JSON")
	flag.Var(&valueFiles, "f", "values file (repeatable; later ones win)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail("-chart DIR is required")
	}

	// Chart.yaml, values.yaml, files.
	var meta Metadata
	chartYAML, err := os.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.UnmarshalStrict(chartYAML, &meta); err != nil {
		fail("Chart.yaml: %v", err)
	}
	defaults := map[string]interface{}{}
	if data, err := os.ReadFile(filepath.Join(*chartDir, "values.yaml")); err == nil {
		if defaults, err = yamlToMap(data); err != nil {
			fail("values.yaml: %v", err)
		}
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		m, err := yamlToMap(data)
		if err != nil {
			fail("%s: %v", f, err)
		}
		user = mergeUser(user, m)
	}
	values := coalesce(defaults, user)
	if *valuesOut != "" {
		j, _ := json.MarshalIndent(values, "", "  ")
		if err := os.WriteFile(*valuesOut, j, 0o644); err != nil {
			fail("%v", err)
		}
	}

	templates := map[string]string{} // "NAME/templates/x.yaml" -> text
	// readChart collects one chart's templates (under prefix) and its other files.
	readChart := func(root, prefix string) Files {
		files := Files{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			if strings.HasPrefix(rel, "charts/") {
				return nil // subcharts are read on their own
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.HasPrefix(rel, "templates/") {
				templates[path.Join(prefix, rel)] = string(data)
			} else if rel != "Chart.yaml" && rel != "values.yaml" && rel != "values.schema.json" {
				files[rel] = data
			}
			return nil
		})
		if err != nil {
			fail("%v", err)
		}
		return files
	}
	root := filepath.Clean(*chartDir)
	files := readChart(root, meta.Name)

	// Subcharts: charts/NAME folders (or symlinks to them).
	type subchart struct {
		meta   Metadata
		prefix string
		files  Files
	}
	var subcharts []subchart
	entries, _ := os.ReadDir(filepath.Join(root, "charts"))
	for _, e := range entries {
		dir, err := filepath.EvalSymlinks(filepath.Join(root, "charts", e.Name()))
		if err != nil {
			fail("subchart %s: %v", e.Name(), err)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		var sm Metadata
		data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
		if err != nil {
			fail("subchart %s: %v", e.Name(), err)
		}
		if err := yaml.UnmarshalStrict(data, &sm); err != nil {
			fail("subchart %s: Chart.yaml: %v", e.Name(), err)
		}
		subDefaults := map[string]interface{}{}
		if data, err := os.ReadFile(filepath.Join(dir, "values.yaml")); err == nil {
			if subDefaults, err = yamlToMap(data); err != nil {
				fail("subchart %s: values.yaml: %v", e.Name(), err)
			}
		}
		userSub, _ := values[sm.Name].(map[string]interface{})
		values[sm.Name] = coalesce(subDefaults, userSub)
		prefix := path.Join(meta.Name, "charts", sm.Name)
		subcharts = append(subcharts, subchart{sm, prefix, readChart(dir, prefix)})
	}
	if *valuesOut != "" && len(subcharts) > 0 {
		j, _ := json.MarshalIndent(values, "", "  ")
		if err := os.WriteFile(*valuesOut, j, 0o644); err != nil {
			fail("%v", err)
		}
	}

	// Objects that lookup finds.
	var lookupObjects []map[string]interface{}
	if *lookupFile != "" {
		data, err := os.ReadFile(*lookupFile)
		if err != nil {
			fail("%v", err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			m, err := yamlToMap([]byte(doc))
			if err != nil {
				fail("%s: %v", *lookupFile, err)
			}
			if len(m) > 0 {
				lookupObjects = append(lookupObjects, m)
			}
		}
	}
	lookup := func(apiVersion, kind, ns, name string) (map[string]interface{}, error) {
		var items []interface{}
		for _, o := range lookupObjects {
			md, _ := o["metadata"].(map[string]interface{})
			if o["apiVersion"] != apiVersion || o["kind"] != kind || (ns != "" && md["namespace"] != ns) {
				continue
			}
			if name == "" {
				items = append(items, o)
			} else if md["name"] == name {
				return o, nil
			}
		}
		if name == "" {
			return map[string]interface{}{"apiVersion": "v1", "kind": kind + "List", "items": items}, nil
		}
		return map[string]interface{}{}, nil
	}

	kv := strings.TrimPrefix(*kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		fail("-kube-version %q: expected MAJOR.MINOR[.PATCH]", *kubeVersion)
	}
	if len(parts) == 2 {
		kv += ".0"
	}
	caps := &Capabilities{
		APIVersions: append(VersionSet(append([]string{}, builtinAPIVersions...)), apiVersions...),
		KubeVersion: KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1]},
		HelmVersion: HelmVersion{Version: "v3.16.0"},
	}
	top := map[string]interface{}{
		"Values":       values,
		"Release":      Release{Name: *releaseName, Namespace: *namespace, Service: "Helm", Revision: 1, IsInstall: !*isUpgrade, IsUpgrade: *isUpgrade},
		"Chart":        ChartObject{Metadata: meta, IsRoot: true},
		"Capabilities": caps,
		"Files":        files,
		"Subcharts":    map[string]interface{}{},
	}

	// The template set: every file under templates/, parsed into one set as Helm does.
	var t *template.Template
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	included := map[string]int{}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["fromJsonArray"] = fromJSONArray
	funcs["lookup"] = lookup
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		tt, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := tt.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }

	t = template.New("gotpl")
	if *strict {
		t.Option("missingkey=error")
	} else {
		t.Option("missingkey=zero")
	}
	t.Funcs(funcs)
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(templates[n]); err != nil {
			fail("parse error: %v", err)
		}
	}

	// The context of each template: its own chart's.
	contextOf := func(n string) map[string]interface{} {
		for _, sc := range subcharts {
			if strings.HasPrefix(n, sc.prefix+"/") {
				sub := map[string]interface{}{}
				for k, v := range top {
					sub[k] = v
				}
				sub["Values"] = values[sc.meta.Name]
				sub["Chart"] = ChartObject{Metadata: sc.meta}
				sub["Files"] = sc.files
				sub["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(sc.prefix, "templates")}
				return sub
			}
		}
		top["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(meta.Name, "templates")}
		return top
	}
	var out bytes.Buffer
	for _, n := range names {
		base := path.Base(n)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != *notes {
			continue
		}
		if isNotes && strings.HasPrefix(n, meta.Name+"/charts/") {
			continue // Helm shows only the parent's notes
		}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, n, contextOf(n)); err != nil {
			fail("execution error: %v", err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if *notes {
			out.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(text))
	}
	os.Stdout.Write(out.Bytes())
}
