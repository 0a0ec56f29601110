package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
)

// maxBody bounds every request body.
const maxBody = 64 << 10

// decode reads a strict JSON body into v: unknown fields, fields named in
// another case and repeated fields are refused (422, see exactFields) so no
// typo is silently ignored and no client can set a server-owned field;
// malformed JSON is 400; a value of the wrong type is 422 naming the field.
// An empty body decodes as {} (actions accept either).
func decode(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		body = []byte("{}")
	} else {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, params, err := mime.ParseMediaType(ct)
			if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return cardrail.Errorf(cardrail.CodeUnsupportedMedia, "Send JSON with Content-Type: application/json.")
			}
			// JSON is UTF-8 (RFC 8259, section 8.1); a body declared in
			// another charset would be read as UTF-8 regardless.
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
				return cardrail.Errorf(cardrail.CodeUnsupportedMedia, "Send JSON in UTF-8: charset %q is not accepted.", cs)
			}
		}
		// No content coding is decoded (RFC 9110, section 8.4): a
		// compressed body would be read as its compressed bytes.
		for _, ce := range r.Header.Values("Content-Encoding") {
			if ce = strings.TrimSpace(ce); ce != "" && !strings.EqualFold(ce, "identity") {
				return cardrail.Errorf(cardrail.CodeUnsupportedMedia, "Send the body uncompressed: Content-Encoding %q is not accepted.", ce)
			}
		}
		if bytes.Equal(trimmed, []byte("null")) {
			// encoding/json takes a null body as nothing decoded, which
			// would pass for {}; every body is an object.
			return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body must be a JSON object.")
		}
		if !utf8.Valid(body) {
			// encoding/json would store each bad byte as U+FFFD: a name
			// or note silently not the one sent.
			return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body is not valid UTF-8, which JSON text must be (RFC 8259, section 8.1).")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if esc, lone := loneSurrogate(body); lone {
		// encoding/json would store U+FFFD in its place, as it would a
		// byte that is not UTF-8: a name or note silently not the one
		// sent.
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body escapes a lone UTF-16 surrogate (%s), which is not a character; a character outside the Basic Multilingual Plane is escaped as a pair, high then low.", esc)
	}
	if err := exactFields(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	if dec.More() {
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body holds more than one JSON value.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body holds more than one JSON value.")
	}
	return nil
}

// readBody reads the whole (size-limited) body, answering 413 when it is
// over the limit.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, cardrail.Errorf(cardrail.CodeBodyTooLarge, "The request body exceeds %d bytes.", tooBig.Limit)
		}
		return nil, cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body could not be read.")
	}
	return body, nil
}

// loneSurrogate finds a \u escape of a UTF-16 surrogate that is not half
// of a high-low pair, returning the escape. body is already known to be
// valid JSON.
func loneSurrogate(body []byte) (string, bool) {
	if !bytes.Contains(body, []byte(`\u`)) {
		return "", false
	}
	hex := func(b []byte) rune {
		n, err := strconv.ParseUint(string(b), 16, 16)
		if err != nil {
			return -1
		}
		return rune(n)
	}
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch {
		case c == '"':
			inString = false
		case c == '\\' && i+6 <= len(body) && body[i+1] == 'u':
			r := hex(body[i+2 : i+6])
			switch {
			case r >= 0xD800 && r < 0xDC00:
				if i+12 <= len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
					if lo := hex(body[i+8 : i+12]); lo >= 0xDC00 && lo < 0xE000 {
						i += 11
						continue
					}
				}
				return string(body[i : i+6]), true
			case r >= 0xDC00 && r < 0xE000:
				return string(body[i : i+6]), true
			}
			i += 5
		case c == '\\':
			i++ // the escaped character, which may be a quote
		}
	}
	return "", false
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && strings.Contains(syn.Error(), "exceeded max depth"):
		// Go's decoder stops at 10,000 levels; no request here nests
		// more than three.
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body nests JSON too deeply.")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body is not valid JSON.")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body must be a JSON object.")
		}
		msg := "must be " + jsonKind(typ.Type.Kind().String())
		if strings.HasPrefix(typ.Type.String(), "int") && strings.HasPrefix(typ.Value, "number") {
			// Every integer a body takes is an amount but the simulated
			// partner's delay; both are bounded far below int64.
			unit, bounds := "minor units", cardrail.AmountRange
			if field == "delay_ms" {
				unit, bounds = "milliseconds", issuing.DelayRange
			}
			msg = "must be an integer (" + unit + "), not a fraction or exponent"
			if !strings.ContainsAny(strings.TrimPrefix(typ.Value, "number "), ".eE") {
				msg = bounds // an integer literal too large for int64
			}
		}
		return cardrail.Invalid(cardrail.FieldError{Field: field, Message: msg})
	}
	return cardrail.Errorf(cardrail.CodeMalformedRequest, "The request body could not be decoded.")
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"):
		return "an integer"
	case goKind == "string":
		return "a string"
	case goKind == "bool":
		return "a boolean"
	case goKind == "slice":
		return "an array"
	case goKind == "map", goKind == "struct", goKind == "ptr":
		return "an object"
	}
	return fmt.Sprintf("of type %s", goKind)
}

// listParams reads ?limit= and ?cursor=; a cursor must be a reference
// with the list's prefix, unless prefix is "" (programPage checks its own).
func listParams(r *http.Request, prefix string) (cardrail.ListParams, error) {
	p := cardrail.ListParams{Limit: 20, Cursor: r.URL.Query().Get("cursor")}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return p, cardrail.Invalid(cardrail.FieldError{Field: "limit", Message: "must be an integer from 1 to 100"})
		}
		p.Limit = n
	}
	if p.Cursor != "" && prefix != "" && !cardrail.HasPrefix(p.Cursor, prefix) {
		return p, cardrail.Invalid(cardrail.FieldError{Field: "cursor", Message: "is not a cursor this list returned"})
	}
	return p, nil
}

// list is the rendered shape of every list.
type list[T any] struct {
	Object     string  `json:"object"`
	Data       []T     `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

func renderPage[T any](p cardrail.Page[T]) list[T] {
	return list[T]{Object: "list", Data: p.Data, HasMore: p.HasMore, NextCursor: p.NextCursor}
}

// refPage pages a list the service returns whole (wallets, webhook
// endpoints: a handful each) as the database pages the others: by
// reference, newest first, and the cursor (the previous page's last
// reference) is a bound, so a walk goes on past an item that has left the
// list since (an endpoint deleted).
func refPage[T any](r *http.Request, prefix string, items []T, ref func(T) string) (list[T], error) {
	p, err := listParams(r, prefix)
	if err != nil {
		return list[T]{}, err
	}
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(ref(b), ref(a)) })
	if p.Cursor != "" {
		items = from(items, func(it T) bool { return ref(it) < p.Cursor })
	}
	return firstPage(items, p.Limit, ref), nil
}

// from is the items from the first that f holds for (none if no item).
func from[T any](items []T, f func(T) bool) []T {
	if i := slices.IndexFunc(items, f); i >= 0 {
		return items[i:]
	}
	return nil
}

// firstPage renders the first limit items, keyed for the next page by key.
func firstPage[T any](items []T, limit int, key func(T) string) list[T] {
	out := list[T]{Object: "list", Data: items[:min(limit, len(items))]}
	if len(items) > limit {
		next := key(items[limit-1])
		out.HasMore, out.NextCursor = true, &next
	}
	if out.Data == nil {
		out.Data = []T{}
	}
	return out
}
