package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	"github.com/cardrail/cardrail"
)

// exactFields checks every object key of body against the request type t,
// after the body has decoded. encoding/json matches names without regard
// to case, so on its own it would take {"AMOUNT": 3} as "amount" and let
// the last of {"amount": 1, "Amount": 2} win: a typo silently accepted.
// Here a key must be a field's name exactly and may appear once per
// object; anything else is 422 naming the field by its path
// ("spending_controls.Daily"). Keys of maps (metadata) are the caller's
// own and only their repetition is refused.
//
// body must already be valid JSON (the decoder said so), which keeps this
// a plain walk over the bytes: it sits on the authorization path, where
// a json.Decoder token walk cost more than the rest of decoding.
func exactFields(body []byte, t reflect.Type) error {
	w := keyWalk{b: body}
	if err := w.value(t, ""); err != nil {
		return err
	}
	if w.nul {
		return cardrail.Invalid(cardrail.FieldError{Field: "", Message: nulMessage})
	}
	return nil
}

// nulMessage refuses "\u0000" in a string: no field has a use for it, and
// PostgreSQL cannot store it in text, so without this the same request
// would be stored by SQLite and fail on PostgreSQL.
const nulMessage = "must not contain the NUL character (\\u0000)"

// keyWalk walks valid JSON.
type keyWalk struct {
	b []byte
	i int
	// nul is set by a string that decodes to hold a NUL, until the
	// object holding it names the field.
	nul bool
}

func (w *keyWalk) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value walks one value, checking its keys against t (nil when the
// value's shape is not known: its keys are then only checked for
// repetition).
func (w *keyWalk) value(t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	w.space()
	if w.i >= len(w.b) {
		return nil
	}
	switch w.b[w.i] {
	case '{':
		return w.object(t, path)
	case '[':
		w.i++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for {
			w.space()
			if w.i >= len(w.b) || w.b[w.i] == ']' {
				w.i++
				return nil
			}
			if err := w.value(elem, path); err != nil {
				return err
			}
			w.space()
			if w.i < len(w.b) && w.b[w.i] == ',' {
				w.i++
			}
		}
	case '"':
		w.str()
	default:
		for w.i < len(w.b) && !strings.ContainsRune(",]} \t\n\r", rune(w.b[w.i])) {
			w.i++
		}
	}
	return nil
}

func (w *keyWalk) object(t reflect.Type, path string) error {
	w.i++
	var fields map[string]field
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = fieldsOf(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	var first [16][]byte
	seen := first[:0]
	var many map[string]bool
	for {
		w.space()
		if w.i >= len(w.b) || w.b[w.i] == '}' {
			w.i++
			return nil
		}
		key := w.str()
		if w.nul {
			return fieldProblem(path, key, nulMessage)
		}
		w.space()
		w.i++ // the colon
		if many == nil && len(seen) == len(first) {
			// A large object (metadata): a set from here on.
			many = map[string]bool{}
			for _, k := range seen {
				many[string(k)] = true
			}
			seen = nil
		}
		repeated := many[string(key)]
		for _, k := range seen {
			repeated = repeated || bytes.Equal(k, key)
		}
		if repeated {
			return fieldProblem(path, key, "appears more than once")
		}
		if many != nil {
			many[string(key)] = true
		} else {
			seen = append(seen, key)
		}
		next := elem
		if fields != nil {
			f, ok := fields[string(key)]
			if !ok {
				return fieldProblem(path, key, unknownField(fields, string(key)))
			}
			next = f.typ
			if f.notNull && w.null() {
				return fieldProblem(path, key, "must be an integer, not null")
			}
		} else if elem != nil && w.null() {
			// A map's values (metadata) are strings; null is none of them.
			return fieldProblem(path, key, "must be "+jsonKind(elem.Kind().String())+", not null")
		}
		sub := path
		if composite(next) {
			sub = joinPath(path, key)
		}
		if err := w.value(next, sub); err != nil {
			return err
		}
		if w.nul {
			return fieldProblem(path, key, nulMessage)
		}
		w.space()
		if w.i < len(w.b) && w.b[w.i] == ',' {
			w.i++
		}
	}
}

// null reports whether the value at w.i, after any space, is null.
func (w *keyWalk) null() bool {
	w.space()
	return bytes.HasPrefix(w.b[w.i:], []byte("null"))
}

// composite reports whether values of t hold fields of their own.
func composite(t reflect.Type) bool {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
		return true
	}
	return false
}

// joinPath names a field by its path: "spending_controls.daily".
func joinPath(path string, key []byte) string {
	if path == "" {
		return string(key)
	}
	return path + "." + string(key)
}

func fieldProblem(path string, key []byte, msg string) error {
	return cardrail.Invalid(cardrail.FieldError{Field: joinPath(path, key), Message: msg})
}

// str reads the string at w.i and returns its value, a slice of the body
// unless it holds escapes.
func (w *keyWalk) str() []byte {
	start := w.i
	w.i++
	escaped := false
	for w.i < len(w.b) && w.b[w.i] != '"' {
		if w.b[w.i] == '\\' {
			escaped = true
			w.i++
		}
		w.i++
	}
	w.i++
	raw := w.b[start:min(w.i, len(w.b))]
	if !escaped {
		return raw[1 : len(raw)-1]
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	if strings.IndexByte(s, 0) >= 0 {
		w.nul = true
	}
	return []byte(s)
}

// unknownField explains a key that names no field, pointing at the field
// it differs from only by case when there is one.
func unknownField(fields map[string]field, key string) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return "is not a known field (names are case-sensitive: \"" + name + "\")"
		}
	}
	return "is not a known field"
}

var fieldCache sync.Map // reflect.Type -> map[string]field

// field is a request field as the key walk checks it.
type field struct {
	typ reflect.Type
	// notNull refuses a JSON null, which encoding/json would take as the
	// field left out. It is set by the tag null:"refuse", on the optional
	// amounts whose absence means "all of it": a client whose partial
	// amount came out null must not settle or refund everything.
	notNull bool
}

// fieldsOf maps a struct's JSON names to their fields, as encoding/json
// names them: the tag's name, else the Go name; embedded structs' fields
// promoted; "-" and unexported fields left out.
func fieldsOf(t reflect.Type) map[string]field {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]field)
	}
	fields := map[string]field{}
	for _, f := range reflect.VisibleFields(t) {
		embedded := f.Type
		if embedded.Kind() == reflect.Pointer {
			embedded = embedded.Elem()
		}
		if !f.IsExported() || f.Anonymous && embedded.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			continue // its fields are listed in its place
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fields[name] = field{typ: f.Type, notNull: f.Tag.Get("null") == "refuse"}
	}
	fieldCache.Store(t, fields)
	return fields
}
