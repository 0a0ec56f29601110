package apptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The API reference, api/openapi.json, describes every answer: its status
// for each operation and the schema of its body. Every request a test sends
// through Client.Do is checked against it, so an answer that drifts from
// the reference (a field missing, renamed or undocumented, a status the
// operation does not list) fails the test that produced it.

// docURL names the reference for the schema compiler; nothing is fetched.
const docURL = "file:///cardrail/openapi.json"

type operation struct {
	method    string
	segments  []string // the path template split on "/", "{…}" matching any one segment
	pointer   string   // JSON pointer to the operation in the document
	responses map[string]any
	takesJSON bool // the operation documents a JSON request body
}

type contract struct {
	compiler *jsonschema.Compiler
	ops      []operation
	shared   map[string]map[string]any // components/responses, by name

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema // by JSON pointer
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("cannot locate the repository")
	}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "api", "openapi.json"))
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	var d struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]map[string]any `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	k := &contract{compiler: c, shared: d.Components.Responses, schemas: map[string]*jsonschema.Schema{}}
	for path, methods := range d.Paths {
		for method, body := range methods {
			var op struct {
				Responses   map[string]any `json:"responses"`
				RequestBody struct {
					Content map[string]any `json:"content"`
				} `json:"requestBody"`
			}
			if json.Unmarshal(body, &op) != nil || op.Responses == nil {
				continue // a path-level field, not an operation
			}
			k.ops = append(k.ops, operation{
				method:    strings.ToUpper(method),
				segments:  strings.Split(path, "/"),
				pointer:   "/paths/" + escapePointer(path) + "/" + method,
				responses: op.Responses,
				takesJSON: op.RequestBody.Content["application/json"] != nil,
			})
		}
	}
	return k, nil
})

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// find is the operation a request reaches: the one whose template matches
// the path with the most literal segments.
func (k *contract) find(method, path string) *operation {
	segs := strings.Split(path, "/")
	var best *operation
	bestLiteral := -1
	for i := range k.ops {
		op := &k.ops[i]
		if op.method != method || len(op.segments) != len(segs) {
			continue
		}
		literal := 0
		for j, s := range op.segments {
			switch {
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && segs[j] != "":
			case s == segs[j]:
				literal++
			default:
				literal = -1
			}
			if literal < 0 {
				break
			}
		}
		if literal > bestLiteral {
			best, bestLiteral = op, literal
		}
	}
	return best
}

func (k *contract) schema(pointer string) (*jsonschema.Schema, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.schemas[pointer]; ok {
		return s, nil
	}
	s, err := k.compiler.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	k.schemas[pointer] = s
	return s, nil
}

// check says how an answer departs from the reference; "" when it does
// not. Paths the reference does not describe (the server's own routes,
// methods it answers 405) are left to the tests that send them.
func (k *contract) check(method, path string, sent []byte, res *http.Response, body []byte) string {
	path, _, _ = strings.Cut(path, "?")
	op := k.find(method, path)
	if op == nil || method == http.MethodHead || res.StatusCode == http.StatusMethodNotAllowed ||
		res.StatusCode == http.StatusInternalServerError {
		// A 500 is a failure no reference describes; the tests that
		// provoke one (a tampered database) judge it themselves.
		return ""
	}
	if msg := k.checkRequest(op, sent, res.StatusCode); msg != "" {
		return msg
	}
	status := strconv.Itoa(res.StatusCode)
	resp, ok := op.responses[status].(map[string]any)
	pointer := op.pointer + "/responses/" + status
	if !ok {
		return fmt.Sprintf("status %s is not among the reference's answers for %s %s", status, method, strings.Join(op.segments, "/"))
	}
	if ref, ok := resp["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/responses/")
		pointer = "/components/responses/" + escapePointer(name)
		if resp, ok = k.shared[name]; !ok {
			return "unresolved response " + ref
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) > 0 {
			return "the reference gives this answer no body"
		}
		return ""
	}
	mediaType, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if _, ok := content[mediaType]; !ok {
		return fmt.Sprintf("Content-Type %q is not the reference's for status %s", mediaType, status)
	}
	if mediaType != "application/json" && mediaType != "application/problem+json" {
		return ""
	}
	sch, err := k.schema(pointer + "/content/" + escapePointer(mediaType) + "/schema")
	if err != nil {
		return "compile the reference's schema: " + err.Error()
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return "body is not JSON: " + err.Error()
	}
	if err := sch.Validate(inst); err != nil {
		return "body departs from the reference: " + err.Error()
	}
	return ""
}

// checkRequest says how a request body the server accepted departs from
// the operation's request schema: the reference must not refuse what the
// server takes. Bodies the server refused are the tests' own business.
func (k *contract) checkRequest(op *operation, sent []byte, status int) string {
	if status/100 != 2 || len(bytes.TrimSpace(sent)) == 0 || !op.takesJSON {
		return ""
	}
	sch, err := k.schema(op.pointer + "/requestBody/content/application~1json/schema")
	if err != nil {
		return "compile the reference's request schema: " + err.Error()
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(sent))
	if err != nil {
		return "" // accepted although not JSON: the tests that send such bodies judge that
	}
	if err := sch.Validate(inst); err != nil {
		return "the server accepted a body the reference refuses: " + err.Error()
	}
	return ""
}
