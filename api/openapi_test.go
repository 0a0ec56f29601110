package api

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// httpMethods are the operation keys a path item may hold.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// resolve follows a local "$ref" ("#/a/b") inside doc; it returns nil when the
// target does not exist.
func resolve(doc map[string]any, ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// deref resolves v when it is a {"$ref": ...} object.
func deref(doc map[string]any, v any) map[string]any {
	m := asMap(v)
	if r, ok := m["$ref"].(string); ok {
		return asMap(resolve(doc, r))
	}
	return m
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPICoversEveryRoute keeps openapi.json and routes() in step: every
// route is documented under its path and method with its name as the
// operationId, and every documented operation is a route.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	if v := doc["openapi"]; v != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", v)
	}
	paths := asMap(doc["paths"])
	if paths == nil {
		t.Fatal("openapi.json has no paths")
	}

	type key struct{ path, method string }
	want := map[key]string{}
	names := map[string]bool{}
	for _, rt := range routes() {
		k := key{rt.Path, strings.ToLower(rt.Method)}
		want[k] = rt.Name
		if names[rt.Name] {
			t.Errorf("route name %s is used twice", rt.Name)
		}
		names[rt.Name] = true

		item := asMap(paths[rt.Path])
		if item == nil {
			t.Errorf("%s %s (%s): path missing from openapi.json", rt.Method, rt.Path, rt.Name)
			continue
		}
		op := asMap(item[k.method])
		if op == nil {
			t.Errorf("%s %s (%s): method missing from openapi.json", rt.Method, rt.Path, rt.Name)
			continue
		}
		if id := op["operationId"]; id != rt.Name {
			t.Errorf("%s %s: operationId = %v, want %s", rt.Method, rt.Path, id, rt.Name)
		}
	}

	seenIDs := map[string]string{}
	var docPaths []string
	for p := range paths {
		docPaths = append(docPaths, p)
	}
	sort.Strings(docPaths)
	for _, p := range docPaths {
		item := asMap(paths[p])
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
			t.Errorf("path %s must start and end with /", p)
		}
		ops := 0
		for _, m := range httpMethods {
			opv, ok := item[m]
			if !ok {
				continue
			}
			ops++
			op := asMap(opv)
			if _, ok := want[key{p, m}]; !ok {
				t.Errorf("openapi.json documents %s %s, which is not a route (stale path?)", strings.ToUpper(m), p)
				continue
			}
			id, _ := op["operationId"].(string)
			if other, dup := seenIDs[id]; dup {
				t.Errorf("operationId %s is used by %s and %s %s", id, other, strings.ToUpper(m), p)
			}
			seenIDs[id] = strings.ToUpper(m) + " " + p

			// Every {param} in the path is declared as a required path parameter.
			declared := map[string]bool{}
			params := append(asSlice(item["parameters"]), asSlice(op["parameters"])...)
			for _, pv := range params {
				prm := deref(doc, pv)
				if prm["in"] == "path" {
					n, _ := prm["name"].(string)
					declared[n] = true
					if prm["required"] != true {
						t.Errorf("%s %s: path parameter %s must be required", strings.ToUpper(m), p, n)
					}
				}
			}
			for _, mm := range pathParam.FindAllStringSubmatch(p, -1) {
				if !declared[mm[1]] {
					t.Errorf("%s %s: path parameter {%s} is not declared", strings.ToUpper(m), p, mm[1])
				}
			}
			responses := asMap(op["responses"])
			if len(responses) == 0 {
				t.Errorf("%s %s: no responses", strings.ToUpper(m), p)
			}
			// What the framework answers on every route is documented on
			// every route: 422 for a query parameter the route does not
			// take, and on a POST 409 for a key whose request is running.
			if responses["422"] == nil {
				t.Errorf("%s %s: 422 (an unknown query parameter) is not documented", strings.ToUpper(m), p)
			}
			if m == "post" && responses["409"] == nil {
				t.Errorf("%s %s: 409 (idempotency_request_in_progress) is not documented", strings.ToUpper(m), p)
			}
		}
		if ops == 0 {
			t.Errorf("path %s has no operations", p)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// TestOpenAPIRefsResolve checks that every "$ref" in the document points at
// an existing component.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["$ref"]; ok {
				n++
				s, ok := r.(string)
				switch {
				case !ok:
					t.Errorf("%s: $ref is not a string", at)
				case !strings.HasPrefix(s, "#/components/"):
					t.Errorf("%s: $ref %q does not point into #/components/", at, s)
				case resolve(doc, s) == nil:
					t.Errorf("%s: $ref %q does not resolve", at, s)
				}
			}
			for k, child := range x {
				walk(at+"/"+k, child)
			}
		case []any:
			for i, child := range x {
				walk(at+"/"+strconv.Itoa(i), child)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Fatal("openapi.json has no $ref at all")
	}
}

// TestOpenAPIListsEveryRoutesCommonAnswers: whatever the operation, the
// wrapper can answer 400 (a query string that does not parse), 401, 429 and
// 503 (the request's deadline, or a commit whose outcome is unknown), and a
// DELETE decodes a body like any other (413, 415); a client generated from
// the document must expect them.
func TestOpenAPIListsEveryRoutesCommonAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	for path, item := range asMap(doc["paths"]) {
		for _, method := range httpMethods {
			op := asMap(asMap(item)[method])
			if op == nil {
				continue
			}
			n++
			want := []string{"400", "401", "429", "503"}
			if method == "delete" {
				want = append(want, "413", "415")
			}
			responses := asMap(op["responses"])
			for _, status := range want {
				if _, ok := responses[status]; !ok {
					t.Errorf("%s %s does not list %s", strings.ToUpper(method), path, status)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("openapi.json has no operations")
	}
}

// The reference's problem code is an enum: every code the server can
// answer with, and no other. A code added to the table below without the
// reference (or left in the reference after it is gone) fails here; the
// client-closed code is logged, never received, and is listed all the same
// so that the table and the reference stay one set.
func TestOpenAPIListsEveryErrorCode(t *testing.T) {
	doc := loadOpenAPI(t)
	code := doc["components"].(map[string]any)["schemas"].(map[string]any)["Problem"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)
	documented := map[string]bool{}
	for _, c := range code["enum"].([]any) {
		documented[c.(string)] = true
	}
	for c := range statusByCode {
		if !documented[string(c)] {
			t.Errorf("code %s is not in the reference's Problem.code enum", c)
		}
		delete(documented, string(c))
	}
	for c := range documented {
		t.Errorf("the reference lists code %s, which the server never answers with", c)
	}
}

// SPEC 1 gives every object an "object" field. The test client holds each
// answer to its schema, so the rule lives here, in the schemas: every
// successful JSON answer requires "object", and so does each item of a
// list.
func TestOpenAPITypesEveryObject(t *testing.T) {
	doc := loadOpenAPI(t)
	requires := func(s map[string]any) bool {
		required, _ := s["required"].([]any)
		return slices.Contains(required, any("object"))
	}
	for path, item := range asMap(doc["paths"]) {
		for _, method := range httpMethods {
			op := asMap(asMap(item)[method])
			for status, res := range asMap(op["responses"]) {
				schema := deref(doc, asMap(asMap(asMap(deref(doc, res)["content"])["application/json"])["schema"]))
				if !strings.HasPrefix(status, "2") || schema == nil {
					continue
				}
				if !requires(schema) {
					t.Errorf("%s %s %s: the answer's schema does not require \"object\"", method, path, status)
				}
				if items := deref(doc, asMap(asMap(asMap(schema["properties"])["data"])["items"])); items != nil && !requires(items) {
					t.Errorf("%s %s %s: a list item's schema does not require \"object\"", method, path, status)
				}
			}
		}
	}
}
