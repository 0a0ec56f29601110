package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/cardrail/cardrail"
)

// queryParams maps each operation to the query parameters its OpenAPI
// description declares, so that the document the server publishes is the
// one that decides which parameters a request may send.
var queryParams = sync.OnceValue(func() map[string]map[string]bool {
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	type operation struct {
		OperationID string  `json:"operationId"`
		Parameters  []param `json:"parameters"`
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		panic("api: openapi.json does not parse: " + err.Error())
	}
	resolve := func(p param) param {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			return doc.Components.Parameters[name]
		}
		return p
	}
	out := map[string]map[string]bool{}
	for _, item := range doc.Paths {
		var shared []param
		if raw, ok := item["parameters"]; ok {
			_ = json.Unmarshal(raw, &shared)
		}
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op operation
			if json.Unmarshal(raw, &op) != nil || op.OperationID == "" {
				continue
			}
			names := map[string]bool{}
			for _, p := range slices.Concat(shared, op.Parameters) {
				if p = resolve(p); p.In == "query" {
					names[p.Name] = true
				}
			}
			out[op.OperationID] = names
		}
	}
	return out
})

// checkQuery refuses a query string the operation does not declare: an
// unknown or repeated parameter, or a value that is not printable UTF-8
// text. A filter the server does not know would otherwise be ignored, and
// the caller would take an unfiltered list for a filtered one.
func checkQuery(r *http.Request, operation string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The query string could not be parsed.")
	}
	allowed := queryParams()[operation]
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []cardrail.FieldError
	for _, k := range keys {
		switch {
		case !allowed[k]:
			errs = append(errs, cardrail.FieldError{Field: k, Message: "is not a query parameter of this endpoint"})
		case len(q[k]) > 1:
			errs = append(errs, cardrail.FieldError{Field: k, Message: "appears more than once"})
		case q[k][0] == "":
			// Taken as absent, an empty filter would answer the whole
			// list to a caller who asked for part of it.
			errs = append(errs, cardrail.FieldError{Field: k, Message: "is empty; leave the parameter out instead"})
		case !cardrail.ValidText(q[k][0]):
			errs = append(errs, cardrail.FieldError{Field: k, Message: "must be UTF-8 text without control characters"})
		}
	}
	if len(errs) > 0 {
		return cardrail.Invalid(errs...)
	}
	return nil
}
